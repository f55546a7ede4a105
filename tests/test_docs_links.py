"""The user docs hold together: every relative link in README.md, docs/*.md and
bench/experiment_log.md names a file that exists and, with a #anchor, a heading
of that file (GitHub's anchors), and every docs page is in the README's index."""

import glob
import os
import re

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _docs_files():
  files = [os.path.join(PROJECT_DIR, "README.md"),
           os.path.join(PROJECT_DIR, "bench", "experiment_log.md")]
  files += sorted(glob.glob(os.path.join(PROJECT_DIR, "docs", "*.md")))
  return files


def _prose_lines(path):
  """The file's lines outside fenced code blocks."""
  in_fence = False
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if FENCE.match(line):
        in_fence = not in_fence
        continue
      if not in_fence:
        yield number, line.rstrip("\n")


def github_anchor(heading):
  """GitHub's anchor for a heading: lowercase, markup and punctuation dropped
  (letters, digits, '_', '-' and spaces kept), each space a '-'."""
  text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # a link's text
  text = text.replace("`", "").strip().lower()
  text = re.sub(r"[^\w\- ]", "", text)
  return text.replace(" ", "-")


def anchors(path):
  seen = {}
  result = set()
  for _, line in _prose_lines(path):
    match = HEADING.match(line)
    if not match:
      continue
    anchor = github_anchor(match.group(2))
    count = seen.get(anchor, 0)
    seen[anchor] = count + 1
    result.add(anchor if count == 0 else f"{anchor}-{count}")
  return result


def links(path):
  for number, line in _prose_lines(path):
    for match in LINK.finditer(INLINE_CODE.sub("", line)):
      yield number, match.group(1)


def broken_links(path):
  broken = []
  for number, target in links(path):
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):   # http:, https:, mailto:
      continue
    file_part, _, anchor = target.partition("#")
    resolved = (os.path.normpath(os.path.join(os.path.dirname(path), file_part))
                if file_part else path)
    where = f"{os.path.relpath(path, PROJECT_DIR)}:{number}: {target}"
    if not os.path.exists(resolved):
      broken.append(f"{where} (no such file)")
    elif anchor and (not resolved.endswith(".md") or anchor not in anchors(resolved)):
      broken.append(f"{where} (no heading #{anchor})")
  return broken


def test_github_anchor_rules():
  assert github_anchor("The train/eval split never reads the labels") == \
      "the-traineval-split-never-reads-the-labels"
  assert github_anchor("Latency: `bench/serving_latency.py`") == \
      "latency-benchserving_latencypy"
  assert github_anchor("Beam at scale: `--beam-args`") == "beam-at-scale---beam-args"
  assert github_anchor("Every command's options") == "every-commands-options"


def test_every_relative_link_resolves():
  files = _docs_files()
  assert len(files) > 10 and all(os.path.exists(f) for f in files)
  broken = [b for path in files for b in broken_links(path)]
  assert not broken, "broken links:\n  " + "\n  ".join(broken)


def test_every_docs_page_is_in_the_readme_index():
  with open(os.path.join(PROJECT_DIR, "README.md"), encoding="utf-8") as f:
    readme = f.read()
  for path in glob.glob(os.path.join(PROJECT_DIR, "docs", "*.md")):
    name = os.path.relpath(path, PROJECT_DIR)
    assert f"]({name})" in readme, f"README.md's index doesn't link {name}"
