"""Model folders (config.json + model.safetensors [+ JSON side files]) written atomically, read with
errors that say what the folder is and what was expected; the config dataclasses they hold, read back."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import fields
from pathlib import Path

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class LatentActionError(ValueError):
    """A bad input to the latent-action pipeline; the message names the field or file, the value seen
    and the value expected."""


def write_folder(folder: str | os.PathLike, fmt: str, config: dict, state: dict,
                 side_files: dict[str, dict] | None = None) -> Path:
    """Write config.json (with "format": fmt), model.safetensors and side JSON files into `folder`
    through a temp folder, weights first, so a config never names absent weights. Other files stay."""
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp / WEIGHTS_FILE),
              metadata={"format": fmt})
    names = [WEIGHTS_FILE]
    for name, data in (side_files or {}).items():
        (tmp / name).write_text(json.dumps(data, indent=2) + "\n")
        names.append(name)
    (tmp / CONFIG_FILE).write_text(json.dumps({"format": fmt, **config}, indent=2) + "\n")
    names.append(CONFIG_FILE)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.replace(tmp / name, folder / name)
    shutil.rmtree(tmp, ignore_errors=True)
    return folder


def config_from_dict(cls, data: dict, what: str, error: type[Exception] = LatentActionError):
    """cls(**data) for a config dataclass; `error` naming the unknown keys (and the known ones) first."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"{what}: unknown fields {unknown}; expected some of {sorted(known)}")
    return cls(**data)


def read_config(folder: str | os.PathLike, fmt: str, what: str) -> dict:
    """config.json of `folder`; LatentActionError when absent or of another format."""
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise LatentActionError(f"{what} {folder}: no {CONFIG_FILE}; expected a folder of format '{fmt}'")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise LatentActionError(f"{path}: not valid JSON ({exc})") from exc
    if data.get("format") != fmt:
        raise LatentActionError(f"{what} {folder}: format {data.get('format')!r}, expected '{fmt}'")
    if not (folder / WEIGHTS_FILE).is_file():
        raise LatentActionError(f"{what} {folder}: no {WEIGHTS_FILE} beside its {CONFIG_FILE}")
    return data


def read_weights(folder: str | os.PathLike) -> dict:
    """The tensors of a folder's model.safetensors."""
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / WEIGHTS_FILE))


def fingerprint(folder: str | os.PathLike) -> str:
    """SHA-256 of a folder's weights file: which trained model this is, wherever it lies."""
    h = hashlib.sha256()
    with open(Path(folder) / WEIGHTS_FILE, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_into(module, state: dict, source: str) -> None:
    """module.load_state_dict(state) with an error naming the file when they do not fit."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise LatentActionError(f"{source}: weights do not fit its config.json ({len(missing)} missing, e.g. "
                                f"{list(missing)[:3]}; {len(unexpected)} unexpected, e.g. {list(unexpected)[:3]})")
