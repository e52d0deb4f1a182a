"""The study: its plan, tasks, outputs and tables, and the demo."""
