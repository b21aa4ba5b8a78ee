"""User-facing errors.

Everything a user can cause (a missing file, a bad config key, a corrupt checkpoint) raises a
`LuoxiaError` whose message is one line that names the culprit. The CLI prints it as
``error: <message>`` and exits with status 2; anything else is a bug and keeps its traceback.
"""


class LuoxiaError(Exception):
    """An error caused by the user's input, with a message meant to be read as is."""


class ConfigError(LuoxiaError):
    """A recipe or override that does not fit the config schema."""


class DataError(LuoxiaError):
    """Input data that cannot be read or leaves nothing to train on."""


class CheckpointError(LuoxiaError):
    """A checkpoint or run directory that is missing, truncated or corrupt."""


class NotFound(LuoxiaError):
    """Something the user named (a model, a run) that does not exist; a server answers 404."""


class ModelNotFound(NotFound, ConfigError):
    """A model name that is not among those loaded (a `ConfigError` too, as it was before it had a type)."""


class RemoteError(LuoxiaError):
    """A remote model's server (an OpenAI-compatible API) that cannot be reached, does not answer in
    time, or refuses a request."""
