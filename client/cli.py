"""The `pindai` command: submit documents for OCR, follow their jobs, check the API.

Progress bars and messages go to stderr. Stdout carries only what scripts capture:
job ids, or the recognized text with `submit --wait` and no `--out`.
"""

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from client.api import (
    ApiError,
    ClientError,
    JobResult,
    PindaiClient,
    ServerUnreachable,
    StorageUploadFailed,
    UploadRoute,
)

DEFAULT_URL = "http://127.0.0.1:8000"
# The server announces only a job's end, and a long poll returns at that moment. A
# poll this short also lets the page bar move every few seconds.
POLL_WAIT_SECONDS = 2.0
# Jobs followed at once. Further jobs wait for a free thread.
MAX_PARALLEL_WAITS = 8

ROUTE_NOTES = {
    UploadRoute.PRESIGNED: "uploaded to object storage by presigned URL",
    UploadRoute.MULTIPART: "uploaded through the API as multipart",
}

# Messages stay on one line each, so that logs and `grep` see them whole.
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class ExitCode(IntEnum):
    OK = 0
    # A file was rejected, a job failed or timed out, or the API returned an error.
    FAILED = 1
    # click's own exit status for invalid options and arguments.
    USAGE = 2
    UNREACHABLE = 3


@dataclass
class TrackedFile:
    """One input file on its way through upload, OCR and output."""

    path: Path
    job_id: str | None = None
    result: JobResult | None = None
    failure: Text | None = None
    output: Path | None = None
    notes: list[Text] = field(default_factory=list)


class _AmountColumn(ProgressColumn):
    """Bytes sent for an upload bar, pages done for a job bar."""

    def __init__(self) -> None:
        super().__init__()
        self._bytes = DownloadColumn()

    def render(self, task: Task) -> Text:
        if task.fields.get("unit") == "bytes":
            return self._bytes.render(task)
        total = "?" if task.total is None else str(int(task.total))
        return Text(f"{int(task.completed)}/{total} pages", style="progress.download")


class _Group(click.Group):
    """A command group that reports escaped client errors as one line and a status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ServerUnreachable as error:
            err_console.print(_error_text("error", str(error)))
            ctx.exit(ExitCode.UNREACHABLE)
        except ApiError as error:
            err_console.print(_api_error_text(error))
            ctx.exit(ExitCode.FAILED)
        except ClientError as error:
            err_console.print(_error_text("error", str(error)))
            ctx.exit(ExitCode.FAILED)


def _validate_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise click.BadParameter(f"expected an http:// or https:// URL, got {value!r}")
    return value


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="PINDAI_URL",
    default=DEFAULT_URL,
    show_default=True,
    show_envvar=True,
    callback=_validate_url,
    help="Base URL of the pindai API.",
)
@click.option(
    "--api-key",
    envvar="PINDAI_API_KEY",
    show_envvar=True,
    help="API key, sent as 'Authorization: Bearer <key>'. The environment variable "
    "keeps the key out of shell history and process lists.",
)
@click.pass_context
def cli(ctx: click.Context, url: str, api_key: str | None) -> None:
    """Send scans to a pindai OCR API and fetch their text."""
    client = PindaiClient(url, api_key=api_key, on_retry=_report_retry)
    ctx.obj = ctx.with_resource(client)


def _report_retry(status: int, delay_s: float) -> None:
    err_console.print(
        f"The server returned HTTP {status} (busy or unavailable); "
        f"retrying in {delay_s:g} s."
    )


@cli.command()
@click.argument(
    "files",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
)
@click.option(
    "--wait", is_flag=True, help="Wait for each job to end, then output its text."
)
@click.option(
    "--out",
    "out_dir",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --wait, write each text to DIR/<file stem>.txt instead of stdout.",
)
@click.option(
    "--timeout",
    "timeout_s",
    metavar="SECONDS",
    type=click.FloatRange(min=0, min_open=True),
    default=600,
    show_default=True,
    help="With --wait, seconds to wait for each job to end.",
)
@click.option(
    "--idempotency-key",
    help="Value of the Idempotency-Key header on the request that creates the job; "
    "only with one FILE.",
)
@click.pass_obj
def submit(
    client: PindaiClient,
    files: tuple[Path, ...],
    wait: bool,
    out_dir: Path | None,
    timeout_s: float,
    idempotency_key: str | None,
) -> None:
    """Upload FILES (PNG, JPEG or PDF) for OCR and print each job id.

    Without --wait, job ids go to stdout, one per line. With --wait, stdout gets the
    text of each finished job unless --out is given, in which case it gets the job
    ids. Exits 0 when every file was accepted (and, with --wait, every job finished),
    1 when any file was rejected or any job failed or timed out, and 3 when the API
    cannot be reached.
    """
    if idempotency_key is not None and len(files) > 1:
        raise click.UsageError("--idempotency-key applies to one FILE only.")
    if idempotency_key is not None and not idempotency_key.strip():
        raise click.UsageError("--idempotency-key must not be empty.")
    if out_dir is not None and not wait:
        raise click.UsageError("--out needs --wait.")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)

    tracked = [TrackedFile(path) for path in files]
    if out_dir is not None:
        for item, output in zip(tracked, output_paths(files, out_dir), strict=True):
            item.output = output
    ids_to_stdout = not wait or out_dir is not None

    with _progress() as progress:
        for item in tracked:
            _upload(client, item, progress, idempotency_key)
            if item.job_id is not None and ids_to_stdout:
                click.echo(item.job_id)
        if wait:
            _wait_for_jobs(client, tracked, progress, timeout_s)

    if wait and out_dir is None:
        _print_texts(client, tracked)
    for item in tracked:
        for note in item.notes:
            err_console.print(note)
    if any(item.failure is not None for item in tracked):
        click.get_current_context().exit(ExitCode.FAILED)


def output_paths(inputs: Sequence[Path], out_dir: Path) -> list[Path]:
    """Map each input to DIR/<stem>.txt, adding -2, -3, ... where stems repeat."""
    used: set[str] = set()
    outputs = []
    for path in inputs:
        name = f"{path.stem}.txt"
        number = 2
        while name in used:
            name = f"{path.stem}-{number}.txt"
            number += 1
        used.add(name)
        outputs.append(out_dir / name)
    return outputs


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        _AmountColumn(),
        TextColumn("{task.fields[state]}", markup=False),
        TimeElapsedColumn(),
        console=err_console,
        # Redrawn bars are noise in a log file, so they appear only on a terminal.
        disable=not err_console.is_terminal,
    )


def _upload(
    client: PindaiClient,
    item: TrackedFile,
    progress: Progress,
    idempotency_key: str | None,
) -> None:
    size = item.path.stat().st_size
    task = progress.add_task(item.path.name, total=size, unit="bytes", state="upload")
    try:
        submission = client.upload_document(
            item.path,
            on_progress=lambda sent: progress.update(task, completed=sent),
            idempotency_key=idempotency_key,
        )
    except ApiError as error:
        progress.update(task, state="rejected")
        item.failure = _api_error_text(error, subject=f"{item.path}: rejected")
        progress.console.print(item.failure)
        return
    except StorageUploadFailed as error:
        progress.update(task, state="failed")
        item.failure = _error_text(f"{item.path}: upload failed", str(error))
        progress.console.print(item.failure)
        return

    item.job_id = submission.job_id
    progress.update(task, completed=size, state="uploaded")
    note = ROUTE_NOTES[submission.route]
    progress.console.print(Text(f"{item.path}: job {submission.job_id} ({note})"))


def _wait_for_jobs(
    client: PindaiClient,
    tracked: list[TrackedFile],
    progress: Progress,
    timeout_s: float,
) -> None:
    """Follow every accepted job at once, each in a thread holding a long poll."""
    accepted = [item for item in tracked if item.job_id is not None]
    if not accepted:
        return
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_WAITS, len(accepted))) as pool:
        futures = [
            pool.submit(_follow_job, client, item, progress, timeout_s, stop)
            for item in accepted
        ]
        try:
            for future in futures:
                future.result()
        except BaseException:
            # After Ctrl-C or a lost connection, other threads stop at their next poll.
            stop.set()
            raise


def _follow_job(
    client: PindaiClient,
    item: TrackedFile,
    progress: Progress,
    timeout_s: float,
    stop: threading.Event,
) -> None:
    job_id = item.job_id or ""
    task = progress.add_task(item.path.name, total=None, unit="pages", state="queued")

    def show(result: JobResult) -> None:
        progress.update(
            task,
            total=result.page_count,
            completed=result.pages_done,
            state=result.status,
        )

    result = _poll_until_end(client, job_id, timeout_s, stop, show)
    if stop.is_set():
        return
    if result is None or not result.ended:
        progress.update(task, state="timed out")
        item.failure = _error_text(
            f"{item.path}: job {job_id}",
            f"did not end within {timeout_s:g} s; follow it with "
            f"`pindai status {job_id}`.",
        )
        progress.console.print(item.failure)
        return

    item.result = result
    if result.status == "failed":
        item.failure = _error_text(
            f"{item.path}: job {job_id} failed",
            f"{result.error_code}: {result.error_message}",
        )
        progress.console.print(item.failure)
        return
    if result.failed_pages:
        pages = ", ".join(str(page) for page in result.failed_pages)
        item.notes.append(
            Text(f"{item.path}: job {job_id} finished without page(s) {pages}.")
        )
    if item.output is not None:
        _write_text(client, job_id, item.output)
        progress.console.print(
            Text(f"{item.path}: job {job_id} finished, text in {item.output}")
        )


def _poll_until_end(
    client: PindaiClient,
    job_id: str,
    timeout_s: float,
    stop: threading.Event,
    on_result: Callable[[JobResult], None],
) -> JobResult | None:
    """Long-poll a job until it ends, `timeout_s` passes or `stop` is set.

    Returns the last result read, which has not ended on a timeout or a stop.
    """
    deadline = time.monotonic() + timeout_s
    result = None
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        result = client.read_result(job_id, wait_s=min(POLL_WAIT_SECONDS, remaining))
        on_result(result)
        if result.ended:
            break
    return result


def _write_text(client: PindaiClient, job_id: str, target: Path) -> None:
    """Download into a side file first, so that a cut connection leaves no torn text."""
    partial = target.with_name(target.name + ".part")
    try:
        with partial.open("wb") as sink:
            client.download_text(job_id, sink)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def _print_texts(client: PindaiClient, tracked: list[TrackedFile]) -> None:
    """Stream the finished texts to stdout in input order, headed by file when many."""
    finished = [
        (item.path, item.result.job_id)
        for item in tracked
        if item.result is not None and item.result.status == "finished"
    ]
    stdout = click.get_binary_stream("stdout")
    for index, (path, job_id) in enumerate(finished):
        if len(tracked) > 1:
            separator = "\n" if index else ""
            stdout.write(f"{separator}==> {path} <==\n".encode())
        client.download_text(job_id, stdout)
        stdout.write(b"\n")
        stdout.flush()


@cli.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result body.")
@click.pass_obj
def status(client: PindaiClient, job_id: str, as_json: bool) -> None:
    """Print a job's status, its pages done of its page count, and its error code.

    Exits 0 whenever the job could be read, whatever its status, so that scripts
    read the status from the output.
    """
    result = client.read_result(job_id)
    if as_json:
        click.echo(json.dumps(result.body, indent=2, ensure_ascii=False))
        return

    total = "?" if result.page_count is None else str(result.page_count)
    rows = [
        ("job", result.job_id),
        ("status", result.status),
        ("pages", f"{result.pages_done}/{total}"),
    ]
    if result.failed_pages:
        rows.append(("failed pages", ", ".join(map(str, result.failed_pages))))
    if result.error_code is not None:
        rows.append(("error", f"{result.error_code}: {result.error_message}"))
    _echo_rows(rows)


@cli.command()
@click.pass_obj
def health(client: PindaiClient) -> None:
    """Check that the API reaches Redis and storage, and exit 1 when it does not.

    Also prints the live workers and the jobs waiting in each queue.
    """
    try:
        body = client.read_readiness()
    except ApiError as error:
        if error.status != 503:
            raise
        _echo_rows([("status", "not ready")])
        err_console.print(_api_error_text(error, subject="not ready"))
        click.get_current_context().exit(ExitCode.FAILED)

    rows = [("status", body["status"]), ("workers", str(body["workers"]))]
    for queue, depth in sorted(body["queues"].items()):
        rows.append((f"queue {queue}", str(depth)))
    _echo_rows(rows)
    if body["workers"] == 0:
        err_console.print("No worker is running, so new jobs stay queued.")


def _echo_rows(rows: list[tuple[str, str]]) -> None:
    """Print label-value rows to stdout, aligned, with no styling to strip."""
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        click.echo(f"{label:<{width}}  {value}")


def _error_text(subject: str, message: str) -> Text:
    return Text.assemble((subject, "bold red"), ": ", message)


def _api_error_text(error: ApiError, subject: str = "error") -> Text:
    code = error.code or f"HTTP {error.status}"
    text = Text.assemble((subject, "bold red"), ": ", (code, "bold"), ": ")
    text.append(error.message)
    if error.request_id:
        text.append(f" (request id {error.request_id})", style="dim")
    return text


def main() -> None:
    """Run the `pindai` command; the console script's entry point."""
    cli(prog_name="pindai")
