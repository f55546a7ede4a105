"""The EasyRec config: its message definitions and the one reader of it."""

from models.config.pipeline_config import (ConfigError, PipelineConfig, Task, load_config,
                                           parse_columns, parse_config, topological_order)

__all__ = ["ConfigError", "PipelineConfig", "Task", "load_config", "parse_columns", "parse_config",
           "topological_order"]
