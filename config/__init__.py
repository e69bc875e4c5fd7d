"""Settings read from the environment, in one place."""
