"""Stage rules and approval flows at run time: gates, locks, tasks, runs and their queries."""
