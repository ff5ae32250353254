"""The notebook as a job: papermill execution with capture, parameters, runs, batches."""
