"""The study: its plan, tasks, outputs and tables, the Dask batch that runs fits, and the demo."""
