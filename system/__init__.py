"""Launch, configuration, CLI, Ray job wiring and logging."""
