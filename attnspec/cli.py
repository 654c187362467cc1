"""The `attnspec` command: one function per subcommand.

Exit codes: 0 clean, 1 errors in a spec, 2 bad usage or I/O, 101 internal error.
Only the project's own errors are caught as user mistakes; anything else is a bug.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from .diagnostics import SpecError, UsageError

EXIT_OK, EXIT_SPEC, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 101


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except SpecError as err:
        print(err.render(), file=sys.stderr)
        return EXIT_SPEC
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as cat does
        _silence_stdout()
        return EXIT_OK
    except (UsageError, OSError) as err:
        print(f"attnspec: error: {_usage_text(err)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # a bug in attnspec, not the user's mistake
        if os.environ.get("ATTNSPEC_DEBUG"):
            raise
        print(f"attnspec: internal error: {type(err).__name__}: {err}\n"
              "This is a bug in attnspec; please report it with the spec and command "
              "(ATTNSPEC_DEBUG=1 shows the traceback).", file=sys.stderr)
        return EXIT_INTERNAL


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit cannot fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no file (captured): nothing will flush
        pass


def _usage_text(err: Exception) -> str:
    if isinstance(err, OSError) and err.filename:
        return f"{err.strerror}: {err.filename}"
    return str(err)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="attnspec", description="Attention mechanisms as "
                                "declarative specs: check, compile, draw.")
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    c = sub.add_parser("compile", help="check and build a spec; print a summary")
    _spec_args(c)
    c.add_argument("--input-shape", metavar="B,C,H,W",
                   help="sizes of the first input (default: batch 2, free axes 8, or "
                   "16, 32, 64: the first the module runs on); the shapes are worked "
                   "out on the meta device, without computing")
    c.add_argument("--code", action="store_true", help="print the generated forward code")
    c.add_argument("--ir", action="store_true", help="print the IR, one line per node")
    c.set_defaults(run=cmd_compile)

    d = sub.add_parser("draw", help="draw a spec's graph (svg, png, pdf or dot)")
    _spec_args(d)
    d.add_argument("-o", "--output", help="file to write: .svg .png .pdf .dot (default: "
                   "the spec's name, or the definition's with --name, .svg, here)")
    d.set_defaults(run=cmd_draw)

    k = sub.add_parser("check", help="check spec files; print errors only")
    k.add_argument("files", nargs="+", metavar="FILE")
    k.set_defaults(run=cmd_check)

    ls = sub.add_parser("list", help="list the shipped specs")
    ls.set_defaults(run=cmd_list)

    cat = sub.add_parser("catalogue", help="write docs/catalogue.md and docs/gallery/")
    cat.add_argument("--check", action="store_true",
                     help="write nothing; exit 1 if the catalogue is out of date")
    cat.set_defaults(run=cmd_catalogue)
    return p


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE",
                   help="a .attn file, or a shipped spec by name (se, se.attn)")
    p.add_argument("--param", "-p", action="append", default=[], metavar="K=V",
                   help="a parameter value, e.g. --param C=64 (repeatable)")
    p.add_argument("--name", help="which definition of the file (default: the main one)")


# ---------------------------------------------------------------------------- commands


def cmd_compile(args) -> int:
    from . import count
    from .lower import lower
    from .passes import fuse

    program, ir = _build(args)
    module = lower(ir)
    module.eval()
    shape, extra, bindings, out = _run_sample(module, ir, args.input_shape)
    flops = count.flops(fuse(ir), bindings)  # what the generated code computes
    outs = out if isinstance(out, tuple) else (out,)  # `output y, mu` returns each
    given = [shape] + [None if t is None else tuple(t.shape) for t in extra]
    _summary(ir, module, given, [tuple(o.shape) for o in outs], flops, args)
    return EXIT_OK


# Sizes tried, in turn, for the first input's free axes when no --input-shape is given: a
# module that pools or strides a map may need more than 8 positions (SA-Net's pool 9).
SAMPLE_SIZES = (8, 16, 32, 64)


def _run_sample(module, ir, text: str | None):
    """Run the module once on an example input: the one --input-shape gives, else the
    smallest of SAMPLE_SIZES it runs on. → (shape, other inputs, bindings, output)."""
    import torch

    from . import count
    from .runtime import AxisTooShortError, InputShapeError

    for free in SAMPLE_SIZES if text is None else (None,):
        shape = _input_shape(text, ir, free)
        try:
            bindings = count.bindings_for(ir, shape)
        except ValueError as err:
            raise UsageError(f"--input-shape {_shape_text(shape)}: {err}") from None
        extra = _other_inputs(ir, bindings)  # a second required input (cross-attention's)
        with torch.no_grad():
            try:
                return shape, extra, bindings, _forward(ir, module, shape, extra)
            except (AxisTooShortError, RuntimeError) as err:  # a map under a pool: torch's
                if text is None and free != SAMPLE_SIZES[-1]:  # or ours, naming the axis
                    continue  # a larger sample
                why = str(err) if isinstance(err, AxisTooShortError) else \
                    f"the module cannot run on it: {str(err).strip().splitlines()[0]}"
                if text is None:  # a pool of 256 needs more than any sample
                    raise UsageError(f"the module runs on none of the sample inputs, up to "
                                     f"{_shape_text(shape)}: {why}; give one with "
                                     f"--input-shape") from None
                raise UsageError(f"--input-shape {_shape_text(shape)}: {why}") from None
            except InputShapeError as err:  # a size the spec fixes only at run time
                if text is None:
                    raise UsageError(f"the sample input {_shape_text(shape)}: {err}; give "
                                     f"one with --input-shape") from None
                raise UsageError(f"--input-shape {_shape_text(shape)}: {err}") from None


def _forward(ir, module, shape: tuple[int, ...], extra: list):
    """The module's outputs on an input of `shape`, of which the summary prints the shapes.
    They come first from a copy on the meta device, which computes shapes and no numbers:
    a 4 × 16384 × 1024 input costs no time and no memory. If that copy fails (an op with no
    meta kernel, or one that reads the numbers), the module itself runs and decides; a
    run-time shape check fails alike on both, so the copy's is final."""
    import torch

    from .lower import lower
    from .runtime import InputShapeError

    try:
        with torch.device("meta"):
            meta = lower(ir).eval()
            return meta.forward(torch.empty(shape),
                                *(None if t is None else t.to("meta") for t in extra))
    except InputShapeError:
        raise
    except Exception:  # any failure of the copy: the real run below gives the verdict
        pass
    # forward itself: GraphModule's __call__ prints a traceback of torch's errors
    return module.forward(torch.randn(*shape), *extra)


def cmd_draw(args) -> int:
    from .draw import render

    _, ir = _build(args, fill_widths=True)
    default = f"{args.name or Path(args.file).stem}.svg"  # `attnspec draw cbam.attn`
    path = render(ir, Path(args.output or default))
    print(f"wrote {path}")
    return EXIT_OK


def cmd_check(args) -> int:
    from .api import parse

    errors = []
    for file in args.files:
        try:
            parse(Path(_spec_file(file)))
        except SpecError as err:
            errors.append(err.render())
    if errors:
        print("\n\n".join(errors), file=sys.stderr)
        return EXIT_SPEC
    return EXIT_OK


def cmd_list(args) -> int:
    from .catalogue import rows, terminal

    print(terminal(rows()))
    return EXIT_OK


def cmd_catalogue(args) -> int:
    from . import catalogue

    if not args.check:
        for path in catalogue.write():
            print(f"wrote {path}")
        return EXIT_OK
    problems = catalogue.stale()
    if problems:
        print("\n".join(problems) + "\nrun `attnspec catalogue` to regenerate the catalogue",
              file=sys.stderr)
        return EXIT_SPEC
    return EXIT_OK


# ---------------------------------------------------------------------------- helpers


def _spec_file(file: str) -> Path:
    """A path, or a shipped spec by its name or file name (`se`, `se.attn`): a file in the
    working directory comes first."""
    from .api import shipped, spec_path
    from .diagnostics import did_you_mean

    path = Path(file)
    if path.is_file():
        return path
    if path.is_dir():
        raise UsageError(f"{file} is a folder, not a spec file")
    bare = len(path.parts) == 1 and path.suffix in ("", ".attn")
    if bare and path.stem in shipped():
        return spec_path(file)
    if path.suffix == ".attn" or path.exists():
        close = did_you_mean(path.stem, shipped()) if bare else None
        raise UsageError(f"no such spec file: {file}"
                         + (f", nor a shipped spec ({close})" if close else ""))
    return spec_path(file)


def _build(args, fill_widths: bool = False):
    """Load, check and build the spec named on the command line. A drawing needs no
    sizes: with `fill_widths`, a required int parameter left out is drawn at 64."""
    from . import check
    from .catalogue import example_widths
    from .program import load
    from .source import SourceFile

    program = load(SourceFile.read(_spec_file(args.file)))
    check.check_program(program)  # the whole file, as `check` sees it: not one definition
    definition = _definition(program, args.name)
    params = parse_params(args.param, definition)
    if fill_widths:
        missing = [p.name for p in definition.params
                   if p.default is None and p.type.name == "int" and p.name not in params]
        if missing:
            chosen = {k: v for k, v in example_widths(program, definition).items()
                      if k in missing}
            params.update(chosen)
            for name, width in chosen.items():
                print(f"note: drawn with {name} = {width} (choose with --param {name}=...)",
                      file=sys.stderr)
    return program, check.build_ir(program, params, definition.name)


def _definition(program, name):
    if name is None:
        return program.main_definition()
    if name not in program.definitions:
        from .diagnostics import did_you_mean

        raise UsageError(f"no definition `{name}` "
                         f"({did_you_mean(name, program.definitions) or 'see the file'})")
    return program.definitions[name]


def parse_params(items: list[str], definition) -> dict:
    """`--param K=V` strings to values of each parameter's declared type."""
    declared = {p.name: p for p in definition.params}
    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key or not text:
            raise UsageError(f"bad --param `{item}`: write K=V, e.g. --param C=64")
        if key not in declared:
            from .diagnostics import did_you_mean

            hint = did_you_mean(key, declared) or \
                f"`{definition.name}` takes {', '.join(declared) or 'no parameters'}"
            raise UsageError(f"bad --param `{item}`: `{definition.name}` has no parameter "
                             f"`{key}` ({hint})")
        if key in values:  # two values: which one was meant is not ours to guess
            raise UsageError(f"bad --param `{item}`: `{key}` is given twice")
        values[key] = _convert(item, declared[key], text)
    return values


def _convert(item: str, param, text: str):
    kind = param.type.name
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            value = float(text)
            if not math.isfinite(value):  # nan, inf, 1e999
                raise ValueError(text)
            return value
    except ValueError:
        raise UsageError(f"bad --param `{item}`: {param.name} is "
                         f"{'an int' if kind == 'int' else 'a finite float'}") from None
    if kind == "bool":
        if text.lower() not in ("true", "false"):
            raise UsageError(f"bad --param `{item}`: {param.name} is a bool (true or false)")
        return text.lower() == "true"
    value = int(text) if param.type.numeric and text.lstrip("-").isdigit() else text
    if value not in param.type.choices:
        raise UsageError(f"bad --param `{item}`: {param.name} is one of "
                         f"{param.type.listed()}")
    return value


def _input_shape(text: str | None, ir, free: int | None) -> tuple[int, ...]:
    """The first input's shape: --input-shape's, else batch 2, the fixed sizes, and `free`
    positions on every other axis."""
    if text is None:
        axes = ir.node(ir.inputs[0]).type.axes
        return (2,) + tuple(a.size or free for a in axes[1:])
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise UsageError(f"bad --input-shape `{text}`: write sizes like 2,64,8,8") from None
    if any(v < 1 for v in shape):
        raise UsageError(f"bad --input-shape `{text}`: sizes must be positive")
    return shape


def _other_inputs(ir, bindings: dict) -> list:
    """Example tensors for the inputs after the first, up to the last required one: their
    axes take the first input's sizes where they share a name, else their fixed size or 8
    (recorded in `bindings`, for the FLOP count); optional ones before it are None."""
    import torch

    nodes = [ir.node(name) for name in ir.inputs[1:]]
    required = [i for i, n in enumerate(nodes) if not n.attrs.get("optional")]
    tensors = []
    for node in nodes[:required[-1] + 1] if required else []:
        if node.attrs.get("optional"):
            tensors.append(None)
            continue
        shape = tuple(bindings.setdefault(a.name, a.size or 8) for a in node.type.axes)
        is_bool = getattr(node.type, "dtype", None) == "bool"
        tensors.append(torch.zeros(shape, dtype=torch.bool) if is_bool else torch.randn(shape))
    return tensors


def _shape_text(shape) -> str:
    return "×".join(map(str, shape))


def _summary(ir, module, in_shapes, out_shapes, flops, args) -> None:
    from . import count

    params = count.parameters(ir)
    info = ir.attentions
    print(f"{ir.name}  ({args.file})")
    for a in info:
        scope = a.scope.rstrip(".") or ir.name
        print(f"  {scope}: {a.name}, over {a.over}, Ω_q = {a.range}, M = {a.heads_text()}")
    for name, in_shape in zip(ir.inputs, in_shapes):  # the inputs the example run gave
        if in_shape is not None:
            print(f"input   {ir.node(name).type}  ← {_shape_text(in_shape)}")
    for name, out_shape in zip(ir.outputs(), out_shapes):
        print(f"output  {ir.node(name).type}  → {_shape_text(out_shape)}")
    print(f"parameters  {sum(params.values()):,}")
    for name, p in module.named_parameters():
        print(f"  {name:<40} {_shape_text(tuple(p.shape)):<14}")
    print(f"FLOPs   {flops:,}  (for input {_shape_text(in_shapes[0])}; 2 per multiply-add)")
    if args.ir:
        print("\n" + ir.text())
    if args.code:
        print(module.code)


if __name__ == "__main__":
    sys.exit(main())
