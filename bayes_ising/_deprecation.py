"""Old Python spellings kept for one release: keyword arguments and module constants renamed
to the one vocabulary (``max_rhat``, ``min_ess``, ``num_chains``, …) still work and emit a
``DeprecationWarning`` naming the new spelling."""

import warnings

__all__ = ["renamed_kwargs", "module_aliases"]


def renamed_kwargs(old_kwargs, renames, where, stacklevel=3):
    """``{new: value}`` for the old keyword arguments ``old_kwargs`` (``renames``: old -> new),
    warning once per old name; a TypeError for a keyword that is neither."""
    out = {}
    for old, value in old_kwargs.items():
        if old not in renames:
            raise TypeError(f"{where}() got an unexpected keyword argument '{old}'")
        new = renames[old]
        warnings.warn(f"{where}({old}=...) is deprecated; write {new}=", DeprecationWarning,
                      stacklevel=stacklevel)
        out[new] = value
    return out


def module_aliases(module_name, namespace, renames):
    """A module ``__getattr__`` serving the old constant names ``renames`` (old -> new) from
    ``namespace`` (the module's ``globals()``) with a DeprecationWarning."""

    def __getattr__(name):
        if name in renames:
            warnings.warn(f"{module_name}.{name} is deprecated; use {renames[name]}",
                          DeprecationWarning, stacklevel=2)
            return namespace[renames[name]]
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    return __getattr__
