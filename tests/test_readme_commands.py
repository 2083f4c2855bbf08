"""The README's `slomo ...` command lines parse with the real CLI.

Every command line of README.md (fenced code blocks, continuation lines included, and inline code
spans in tables and prose) goes through the click command behind `slomo` (`make_context`: options,
required options and value types, no command body runs), so the README cannot advertise an option
the CLI lacks. README notation is expanded rather than ignored: `[--a | --b F]` optional groups are
parsed dropped and with each alternative, `A|B` placeholders with each value, `...` repeats dropped.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pytest
import typer
import typer.main

import superslomo.cli

README = Path(__file__).resolve().parents[1] / "README.md"
# A broken extractor must not pass by finding nothing; today's README has about 25.
MIN_COMMANDS = 5

FENCE = re.compile(r"^\s*(```|~~~)")
# A command inside a code block: a shell prompt or a CI step may come before it.
BLOCK_COMMAND = re.compile(r"^\s*(?:\$\s+|(?:-\s+)?run:\s+)?(slomo(?:\s.*)?)$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
# An upper-case word standing for a value (N, F, CKPT); the CLI decides whether it needs a number.
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$")
NUMBER_STAND_IN = "1"


@dataclass(frozen=True)
class ReadmeCommand:
    line: int
    text: str
    reference: bool = False  # `slomo NAME` in prose names a command; it is not a full command line
    source: str = "README.md"

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.text}"


def extract_commands(markdown: str) -> list[ReadmeCommand]:
    """Every `slomo ...` command line of a Markdown text, with its line number."""
    found: list[ReadmeCommand] = []
    lines = markdown.splitlines()
    fence: str | None = None
    paragraph: list[tuple[int, str]] = []
    i = 0

    def flush() -> None:
        found.extend(_spans(paragraph))
        paragraph.clear()

    while i < len(lines):
        line = lines[i]
        opened = FENCE.match(line)
        if fence is not None:
            if opened and opened.group(1) == fence:
                fence = None
            else:
                match = BLOCK_COMMAND.match(line)
                if match:
                    start, text = i + 1, match.group(1).rstrip()
                    while text.endswith("\\") and i + 1 < len(lines):
                        i += 1
                        text = text[:-1].rstrip() + " " + lines[i].strip()
                    found.append(ReadmeCommand(start, text))
        elif opened:
            flush()
            fence = opened.group(1)
        elif line.lstrip().startswith("|"):  # a table row is its own unit: cells never span rows
            flush()
            found.extend(_spans([(i + 1, line)]))
        elif not line.strip():
            flush()
        else:
            paragraph.append((i + 1, line))
        i += 1
    flush()
    return found


def _spans(numbered: list[tuple[int, str]]) -> list[ReadmeCommand]:
    if not numbered:
        return []
    text = "\n".join(line for _, line in numbered)
    found = []
    for match in CODE_SPAN.finditer(text):
        code = " ".join(match.group(2).split())
        # GFM writes a pipe inside a table cell as \|; elsewhere no command line means a literal \|.
        code = code.replace("\\|", "|")
        if code == "slomo" or not code.startswith("slomo "):
            continue
        line = numbered[0][0] + text.count("\n", 0, match.start())
        found.append(ReadmeCommand(line, code, reference=re.fullmatch(r"slomo \w[\w-]*", code) is not None))
    return found


class _Mark(str):
    """A bracket or alternative bar of README notation (a quoted '[' or '|' stays a plain word)."""


class _Literal(str):
    """A quoted word: taken as written, no alternatives, no repeat dots."""


def _tokens(text: str) -> list[str]:
    """Shell-like words; outside quotes `[`, `]` and a lone `|` become marks, `#` starts a comment."""
    words: list[str] = []
    word, quoted, i = "", False, 0
    in_word = False

    def end() -> None:
        nonlocal word, quoted, in_word
        if in_word:
            words.append(_Literal(word) if quoted else word)
        word, quoted, in_word = "", False, False

    while i < len(text):
        c = text[i]
        if c in "'\"":
            close = text.find(c, i + 1)
            if close < 0:
                raise ValueError(f"unbalanced quote in {text!r}")
            word, quoted, in_word = word + text[i + 1 : close], True, True
            i = close + 1
            continue
        if c == "\\" and i + 1 < len(text):
            word, in_word = word + text[i + 1], True
            i += 2
            continue
        if c.isspace():
            end()
        elif c == "#" and not in_word:
            break
        elif c in "[]":
            end()
            words.append(_Mark(c))
        elif c == "|" and not in_word:  # `A|B` inside a word is a choice of values instead
            words.append(_Mark("|"))
        else:
            word, in_word = word + c, True
        i += 1
    end()
    return words


def _tree(words: list[str]) -> list:
    """Nested notation: a sequence of items; a word is a list of alternative strings, a bracket
    group a tuple of alternative sequences. Shell plumbing after the command is cut off."""
    stack: list[list[list]] = [[[]]]  # per open group: its alternatives so far
    for word in words:
        alternatives = stack[-1]
        if isinstance(word, _Mark):
            if word == "[":
                stack.append([[]])
            elif word == "]":
                if len(stack) == 1:
                    raise ValueError("']' without '['")
                group = tuple(stack.pop())
                stack[-1][-1].append(group)
            elif len(stack) == 1:  # a top-level bar is a shell pipe: the command ends there
                break
            else:
                alternatives.append([])
            continue
        if len(stack) == 1 and word in ("&&", "||", ";"):
            break
        if isinstance(word, _Literal):
            alternatives[-1].append([str(word)])
            continue
        if word == "..." or word == "…":  # "and more of the same"
            continue
        word = word.removesuffix("...").removesuffix("…") or word
        alternatives[-1].append(word.split("|") if "|" not in (word[0], word[-1]) else [word])
    if len(stack) != 1:
        raise ValueError("'[' without ']'")
    return stack[0][0]


def _variants(sequence: list) -> list[list[str]]:
    """The base line (every optional group dropped, first alternative of every word), then one
    line per alternative of each word and of each group, then one with every group in."""

    def base(items: list) -> list[str]:
        return [item[0] for item in items if isinstance(item, list)]

    def full(items: list) -> list[str]:
        return [word for item in items for word in ([item[0]] if isinstance(item, list) else full(item[0]))]

    result = [base(sequence)]
    for k, item in enumerate(sequence):
        before, after = base(sequence[:k]), base(sequence[k + 1 :])
        if isinstance(item, list):
            result += [before + [value] + after for value in item[1:]]
        else:
            for alternative in item:
                result += [before + inner + after for inner in _variants(alternative)]
    result.append(full(sequence))
    unique: list[list[str]] = []
    for variant in result:
        if variant not in unique:
            unique.append(variant)
    return unique


def _drop_redirections(args: list[str]) -> list[str]:
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif re.fullmatch(r"\d?>>?|&>|<", arg):
            skip = True
        elif not re.fullmatch(r"\d?>>?\S+|&>\S+", arg):
            kept.append(arg)
    return kept


def expand(text: str) -> list[list[str]]:
    """The argument lists (after `slomo`) that a README command line stands for."""
    variants = []
    for words in _variants(_tree(_tokens(text))):
        if not words or words[0] != "slomo":
            raise ValueError(f"not a slomo command line: {text!r}")
        variants.append(_drop_redirections(words[1:]))
    return variants


def _root():
    return typer.main.get_command(superslomo.cli.app)


def parse_errors(command: ReadmeCommand, root=None) -> list[str]:
    """Why each variant of a README command line does not parse (empty: all parse)."""
    root = root or _root()
    try:
        variants = expand(command.text)
    except ValueError as error:
        return [f"{command}\n    cannot read the notation: {error}"]
    errors: list[str] = []
    seen: set[str] = set()  # one report per distinct problem, not one per expanded variant
    for args in variants:
        if not args:
            continue  # bare `slomo` shows the help
        if args[0].startswith("-"):  # options of `slomo` itself (--version, --help)
            problem = _parse(root, "slomo", args)
            if problem:
                errors.append(f"{command}\n    parsed as: slomo {' '.join(args)}\n    {problem}")
            continue
        sub = root.commands.get(args[0])
        if sub is None:
            errors.append(
                f"{command}\n    no command {args[0]!r}; the CLI has {', '.join(sorted(root.commands))}"
            )
            continue
        if command.reference:
            continue
        problem = _parse(sub, args[0], args[1:])
        if problem and problem not in seen:
            seen.add(problem)
            errors.append(f"{command}\n    parsed as: slomo {' '.join(args)}\n    {problem}")
    return errors


def _parse(sub, name: str, args: list[str]) -> str | None:
    for _ in range(len(args) + 1):
        try:
            sub.make_context(name, list(args))
            return None
        except typer.Exit as done:
            return None if done.exit_code == 0 else f"exit {done.exit_code}"
        except typer.TyperException as error:  # click's UsageError, BadParameter, NoSuchOption...
            message = error.format_message() if hasattr(error, "format_message") else str(error)
            if "does not exist" in message:
                return None  # a path the reader supplies; only its spelling is checked here
            swapped = _number_for_placeholder(args, getattr(error, "param", None))
            if swapped is None:
                return f"{type(error).__name__}: {message}"
            args = swapped
    return "placeholders could not be resolved"


def _number_for_placeholder(args: list[str], param) -> list[str] | None:
    """`--factor N` means "a number": retry with a number in place of the placeholder word."""
    opts = set(getattr(param, "opts", ()) or ()) - {getattr(param, "name", None)}
    for k, arg in enumerate(args):
        if arg in opts and k + 1 < len(args) and PLACEHOLDER.match(args[k + 1]):
            return args[: k + 1] + [NUMBER_STAND_IN] + args[k + 2 :]
        name, _, value = arg.partition("=")
        if name in opts and PLACEHOLDER.match(value):
            return args[:k] + [f"{name}={NUMBER_STAND_IN}"] + args[k + 1 :]
    return None


# The README's first screen and the depth it links to in docs/: every command line they show.
PAGES = [README, *sorted((README.parent / "docs").glob("*.md"))]
README_COMMANDS = [
    dataclasses.replace(command, source=str(page.relative_to(README.parent)))
    for page in PAGES
    if page.is_file()
    for command in extract_commands(page.read_text(encoding="utf-8"))
]


def test_the_readme_has_command_lines_to_check():
    assert len([c for c in README_COMMANDS if not c.reference]) >= MIN_COMMANDS, (
        f"found only {len(README_COMMANDS)} `slomo ...` lines in {README}: is the extractor broken?\n"
        + "\n".join(map(str, README_COMMANDS))
    )


@pytest.mark.parametrize("command", README_COMMANDS, ids=lambda c: f"{c.source}:L{c.line}:{c.text[:50]}")
def test_readme_command_parses(command):
    errors = parse_errors(command)
    assert not errors, "\n".join(errors)


SNIPPET = r"""
Run it:

```bash
$ slomo export CKPT -o DIR --precision fp16   # a comment, not arguments
slomo export CKPT -o DIR \
    --opset 17 --no-such-option 3
```

| command | what |
| --- | --- |
| `slomo interpolate IN.mp4 -o OUT.mp4 --factor N [--slowmo \| --fps F] [--model DIR\|CKPT]` | x |
| `slomo export CKPTS... -o "odd|name" [--opset 16 ...]` / `slomo info` | y |

Prose names `slomo info` and spans a line break: `slomo interpolate a.mp4
--factor 2`.

```yaml
      - run: slomo interpolate a.mp4 -o b.mp4 --factor four
```
"""


def _toy_cli():
    """A stand-in for the CLI with the parameter kinds the README uses, so this test shows what the
    checker catches whatever becomes of the real options."""
    app = typer.Typer()

    @app.command()
    def interpolate(
        input: Path,
        output: Annotated[Path, typer.Option("-o", "--output")],
        factor: Annotated[int, typer.Option("--factor", "-n")] = 2,
        slowmo: bool = False,
        fps: str | None = None,
        model: Path | None = None,
    ) -> None:
        pass

    @app.command("export")
    def export_command(
        checkpoint: Path, output: Annotated[str, typer.Option("-o")], opset: int = 17, precision: str = "fp32"
    ) -> None:
        pass

    @app.command()
    def info(checkpoint: Path) -> None:
        pass

    return typer.main.get_command(app)


def test_the_extractor_reads_readme_notation_and_the_check_can_fail():
    commands = extract_commands(SNIPPET)
    assert [(c.line, c.reference) for c in commands] == [
        (5, False),
        (6, False),
        (12, False),
        (13, False),
        (13, True),
        (15, True),
        (15, False),
        (19, False),
    ]
    assert commands[1].text == "slomo export CKPT -o DIR --opset 17 --no-such-option 3"
    assert expand(commands[0].text) == [["export", "CKPT", "-o", "DIR", "--precision", "fp16"]]
    assert expand(commands[2].text) == [
        ["interpolate", "IN.mp4", "-o", "OUT.mp4", "--factor", "N"],
        ["interpolate", "IN.mp4", "-o", "OUT.mp4", "--factor", "N", "--slowmo"],
        ["interpolate", "IN.mp4", "-o", "OUT.mp4", "--factor", "N", "--fps", "F"],
        ["interpolate", "IN.mp4", "-o", "OUT.mp4", "--factor", "N", "--model", "DIR"],
        ["interpolate", "IN.mp4", "-o", "OUT.mp4", "--factor", "N", "--model", "CKPT"],
        ["interpolate", "IN.mp4", "-o", "OUT.mp4", "--factor", "N", "--slowmo", "--model", "DIR"],
    ]
    assert expand(commands[3].text) == [
        ["export", "CKPTS", "-o", "odd|name"],
        ["export", "CKPTS", "-o", "odd|name", "--opset", "16"],
    ]
    assert expand("slomo info x.ckpt | head -3 > info.txt") == [["info", "x.ckpt"]]
    assert expand("slomo info x.ckpt 2> err.txt [-v |--json F]") == [
        ["info", "x.ckpt"],
        ["info", "x.ckpt", "-v"],
        ["info", "x.ckpt", "--json", "F"],
    ]

    toy = _toy_cli()
    good = [c for k, c in enumerate(commands) if k not in (1, 6, 7)]
    assert [parse_errors(c, toy) for c in good] == [[]] * len(good)
    (unknown,) = parse_errors(commands[1], toy)  # an option the CLI does not have
    assert unknown.splitlines() == [
        "README.md:6: slomo export CKPT -o DIR --opset 17 --no-such-option 3",
        "    parsed as: slomo export CKPT -o DIR --opset 17 --no-such-option 3",
        "    NoSuchOption: No such option: --no-such-option",
    ]
    (missing,) = parse_errors(commands[6], toy)  # a required option left out
    assert "README.md:15" in missing and "Missing option '-o'" in missing
    (wrong_type,) = parse_errors(commands[7], toy)  # a word where a number goes
    assert "README.md:19" in wrong_type and "'--factor'" in wrong_type
    (nowhere,) = parse_errors(ReadmeCommand(1, "slomo frobnicate X"), toy)
    assert "no command 'frobnicate'" in nowhere
    assert parse_errors(ReadmeCommand(1, "slomo export [--opset 17"), toy)[0].endswith("'[' without ']'")
