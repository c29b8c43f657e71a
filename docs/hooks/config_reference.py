"""MkDocs hook: fills the config reference page from the code at build time."""

import os
import sys


def on_page_markdown(markdown, page, **kwargs):
  """Replaces the page's placeholder with ``stolen_jax.config_reference.markdown()``."""
  if "<!-- CONFIG_REFERENCE -->" not in markdown:
    return markdown
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  from stolen_jax import config_reference
  return markdown.replace("<!-- CONFIG_REFERENCE -->", config_reference.markdown())
