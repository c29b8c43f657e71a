"""The API's documentation page (``/docs``), rendered from its OpenAPI document on the server.

FastAPI's interactive pages load their scripts from a CDN, so on an offline machine they
are blank. This page is plain HTML with no script and no external asset: every operation
with its authentication, headers, request bodies and every status it answers.
"""

import html
import json


def _schema_text(schema) -> str:
  return html.escape(json.dumps(schema, indent=1)) if schema else ""


def render(doc: dict) -> str:
  """The HTML page of an OpenAPI document."""
  info = doc.get("info", {})
  out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(info.get('title', 'API'))}"
         "</title><style>body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
         "padding:0 1rem}code,pre{background:#f4f4f4;padding:.1rem .3rem}pre{padding:.5rem;"
         "overflow:auto}h2{border-top:1px solid #ccc;padding-top:1rem}td,th{text-align:left;"
         "padding:.2rem .6rem;vertical-align:top}</style></head><body>",
         f"<h1>{html.escape(info.get('title', 'API'))}</h1><p>{html.escape(info.get('description', ''))}</p>",
         "<p>The machine-readable document: <a href='/openapi.json'><code>/openapi.json</code></a>.</p>"]
  schemes = doc.get("components", {}).get("securitySchemes", {})
  for s in schemes.values():  # Once, for every operation marked as requiring the key.
    out.append(f"<p><b>Authentication</b>: <code>Authorization: "
               f"{html.escape(str(s.get('scheme', '')).title())} KEY</code> on every operation "
               "marked <i>requires the API key</i>.</p>")
  for path, ops in doc.get("paths", {}).items():
    for method, op in ops.items():
      out.append(f"<h2><code>{method.upper()} {html.escape(path)}</code></h2>")
      if op.get("summary"):
        out.append(f"<p>{html.escape(op['summary'])}</p>")
      if op.get("security"):
        out.append("<p><i>Requires the API key.</i></p>")
      if op.get("x-example-request"):
        out.append(f"<p>Example request:</p><pre>{html.escape(op['x-example-request'])}</pre>")
      params = op.get("parameters", [])
      if params:
        out.append("<table><tr><th>parameter</th><th>in</th><th>required</th><th>description</th></tr>")
        for p in params:
          out.append(f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{p.get('in', '')}</td>"
                     f"<td>{'yes' if p.get('required') else 'no'}</td>"
                     f"<td>{html.escape(p.get('description', ''))}</td></tr>")
        out.append("</table>")
      body = op.get("requestBody", {}).get("content", {})
      for media, spec in body.items():
        out.append(f"<p>Body <code>{html.escape(media)}</code>: "
                   f"{html.escape(spec.get('description', ''))}</p>")
      out.append("<table><tr><th>status</th><th>meaning</th></tr>")
      examples = []
      for status, r in op.get("responses", {}).items():
        headers = ", ".join(r.get("headers", {}))
        out.append(f"<tr><td>{status}</td><td>{html.escape(r.get('description', ''))}"
                   f"{f' (headers: {html.escape(headers)})' if headers else ''}</td></tr>")
        for media, spec in r.get("content", {}).items():
          if "example" in spec:
            examples.append((status, media, spec["example"]))
      out.append("</table>")
      for status, media, example in examples:
        out.append(f"<p>Example answer ({status}, <code>{html.escape(media)}</code>):</p>"
                   f"<pre>{html.escape(json.dumps(example, indent=1))}</pre>")
  out.append("</body></html>")
  return "\n".join(out)
