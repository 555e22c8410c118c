"""SQL functions the rule compiler uses."""
