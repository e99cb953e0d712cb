"""
C{vernemq.conf}: one typed, validated L{Config}.

The schema (keys, types, defaults, docs) lives in L{vernemq.config.schema};
value parsers in L{vernemq.config.types}; reading files in
L{vernemq.config.loader}.
"""

from vernemq.config.loader import (
    Config,
    ConfigError,
    ListenerSpec,
    config_from_text,
    load_config,
)
from vernemq.config.schema import SCHEMA, Setting
from vernemq.config.types import Address, HostPort

__all__ = [
    "SCHEMA",
    "Address",
    "Config",
    "ConfigError",
    "HostPort",
    "ListenerSpec",
    "Setting",
    "config_from_text",
    "load_config",
]
