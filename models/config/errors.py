"""The one error a config reader raises, in a module of its own so that the
reader (pipeline_config) and the editor (edit) can both raise it without
importing each other."""


class ConfigError(ValueError):
  """A config that can't be run; the message names file, line and field."""
