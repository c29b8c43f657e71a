"""Results docs written by the commands they name: a sweep (``sweep.doc``) puts its table into
its own section of a markdown file, between markers, with the command that made it.

A section is replaced whole on every run and never touches another, so a heading can only
carry the table of the run that wrote it.
"""

import os
import re
import shlex
import shutil
import sys
import time

START, END = "<!-- section: {} -->", "<!-- /section: {} -->"


def command_line() -> str:
  """The command this process was started with, as a shell would take it back, with the
  data files' directories written as DATA_DIR (a results doc names no machine's paths)."""
  argv = list(sys.argv)
  if argv and argv[0].endswith(os.path.join("stolen_jax", "main.py")):
    argv = ["python", "-m", "stolen_jax.main"] + argv[1:]
  return " ".join(shlex.quote(relative_data_paths(a)) for a in argv)


def relative_data_paths(arg: str) -> str:
  """'--x=npz:/abs/dir/cifar10.npz,npz:../dir/mnist.npz' -> '...npz:DATA_DIR/cifar10.npz,...'
  (a data source's directory, absolute or relative to where it ran, becomes DATA_DIR)."""
  return re.sub(r"(npz|folder):([^,\s]*/)([^/,\s]+)", r"\1:DATA_DIR/\3", arg)


def write_section(path: str, title: str, markdown: str, workdir: str) -> str:
  """Writes ``markdown`` as the section ``title`` of the doc at ``path`` (created if
  missing; the section replaced if present), with the command and date; a plot the
  markdown links (``results.png`` in ``workdir``) is copied beside the doc. Returns path."""
  path = os.path.abspath(path)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  # ASCII only: a plot's file name must survive every tool and file system (titles carry ‖δ‖₂).
  slug = "".join(c if c.isascii() and c.isalnum() else "_" for c in title)
  slug = slug.strip("_").lower()[:60] or "section"
  if "(results.png)" in markdown and os.path.exists(os.path.join(workdir, "results.png")):
    shutil.copyfile(os.path.join(workdir, "results.png"),
                    os.path.join(os.path.dirname(path), f"{slug}.png"))
    markdown = markdown.replace("(results.png)", f"({slug}.png)")
  body = (f"{START.format(title)}\n## {title}\n\nWritten by (workdir `{workdir}`, "
          f"{time.strftime('%Y-%m-%d')}):\n\n```bash\n{command_line()}\n```\n\n{markdown.strip()}\n"
          f"{END.format(title)}\n")
  text = open(path).read() if os.path.exists(path) else ""
  start, end = START.format(title), END.format(title)
  if start in text and end in text:
    a, b = text.index(start), text.index(end) + len(end) + 1
    text = text[:a] + body + text[b:]
  else:
    text = (text.rstrip() + "\n\n" if text.strip() else "") + body
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)
  return path
