"""Code shared by the API and the workers: settings, errors, job records, logs."""
