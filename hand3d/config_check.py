"""The workflow's configuration, checked for what its JSON Schema cannot say: a whole-number setting written 6.0.

JSON Schema counts 6.0 as an integer (a number with no fraction is one, by its spec), so snakemake's `validate`
lets `num_pca: 6.0` or `train: 100.0` through, to fail deep inside smplx or range(). This checks the config again
against the same schema with `integer` meaning a Python int.
"""

from __future__ import annotations

import os
from pathlib import Path

import jsonschema
import yaml

__all__ = ["check_integer_settings"]


def _is_int(checker, value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_Validator = jsonschema.Draft202012Validator
_StrictValidator = jsonschema.validators.extend(
    _Validator, type_checker=_Validator.TYPE_CHECKER.redefine("integer", _is_int)
)


def check_integer_settings(config: dict, schema_path: str | os.PathLike) -> None:
    """Raise ValueError naming each setting the schema types `integer` that holds a float (6.0 for 6).

    Run after snakemake's `validate`, which has checked everything else and filled in the defaults.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    floats = [
        f"{'.'.join(map(str, error.absolute_path))} is {error.instance!r}"
        for error in _StrictValidator(schema).iter_errors(config)
        if error.validator == "type" and isinstance(error.instance, float)
    ]
    if floats:
        raise ValueError(
            f"config: {', '.join(floats)}; these settings take whole numbers, written without a decimal point"
        )
