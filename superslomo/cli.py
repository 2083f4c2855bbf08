"""The `slomo` command: a thin layer that parses options and calls the stages.

Every stage raises `SloMoError` for bad input; `main` turns it into one line on stderr and the
exit code of DESIGN.md (0 ok, 1 a check failed, 2 usage or input error), never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import signal

import typer

from superslomo.errors import Interrupted, SloMoError

app = typer.Typer(
    name="slomo",
    help="Super SloMo frame interpolation: export to ONNX, build TensorRT engines, interpolate videos.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def echo_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
def info(
    checkpoint: Path = typer.Argument(..., help="A public-format (.ckpt/.pth) or safetensors checkpoint."),
    as_json: bool = typer.Option(False, "--json", help="Print the facts as JSON."),
) -> None:
    """Print a checkpoint's format, width, parameter count, sha256 and metadata."""
    from superslomo.model.checkpoint import _json_safe, inspect_checkpoint

    facts = inspect_checkpoint(checkpoint)
    data = {
        "path": facts.path,
        "format": facts.format,
        "width": facts.width,
        "parameters": facts.parameters,
        "dtype": facts.dtype,
        "sha256": facts.sha256,
        "metadata": _json_safe(facts.metadata),
    }
    if as_json:
        echo_json(data)
        return
    for key in ("path", "format", "width", "parameters", "dtype", "sha256"):
        value = f"{data[key]:,}" if key == "parameters" else data[key]
        typer.echo(f"{key:11s} {value}")
    for key, value in data["metadata"].items():
        text = json.dumps(value) if not isinstance(value, str) else value
        if len(text) > 100:
            text = text[:97] + "..."
        typer.echo(f"  {key}: {text}")


@app.command()
def convert(
    checkpoint: Path = typer.Argument(..., help="Checkpoint to convert (public format or safetensors)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .safetensors file."),
    fp16: bool = typer.Option(False, "--fp16", help="Store weights as float16 (half the size)."),
) -> None:
    """Write a checkpoint in the project's own format (safetensors with its config)."""
    import torch

    from superslomo.model.checkpoint import checkpoint_metadata, file_sha256, load_checkpoint, save_checkpoint

    if output.suffix != ".safetensors":
        raise SloMoError(f"output must end in .safetensors: {output}")
    if output.resolve() == checkpoint.resolve():
        raise SloMoError("output would overwrite the input checkpoint")
    if not output.parent.is_dir():
        raise SloMoError(f"output folder does not exist: {output.parent}")
    model = load_checkpoint(checkpoint)
    meta = {"source": checkpoint.name, "source_sha256": file_sha256(checkpoint), **checkpoint_metadata(checkpoint)}
    save_checkpoint(model, output, metadata=meta, dtype=torch.float16 if fp16 else torch.float32)
    typer.echo(f"wrote {output} (width {model.config.width})")


def _interrupt(signum: int, frame: object) -> None:
    # Raised as our own error (not KeyboardInterrupt) so the CLI framework does not print
    # "Aborted!" with exit 1, which means "a check failed" here; `finally` blocks still clean up.
    raise Interrupted("interrupted: no partial output was left behind")


def main(argv: Optional[list[str]] = None) -> None:
    signal.signal(signal.SIGINT, _interrupt)
    try:
        app(args=argv, prog_name="slomo")
    except SloMoError as error:
        typer.echo(f"error: {error}" if not isinstance(error, Interrupted) else str(error), err=True)
        sys.exit(error.exit_code)
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        typer.echo(f"error: {error.strerror or error}{where}", err=True)
        sys.exit(2)
    except MemoryError:
        typer.echo("error: out of memory (try a smaller size or batch)", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
