"""What the API accepts from a customer, within limits it checks before spending memory.

A hostile key holder can send a small file that decodes to a huge image (a 118 KB PNG of
11,000 × 11,000 pixels), a body with no ``Content-Length`` that never ends, or many large
images at once. So: the body is read as a stream and cut off at ``max_body_bytes``; each
image's declared dimensions are read from its header and checked against
``max_image_pixels`` (and the request's sum against ``max_request_pixels``) before any pixel
is decoded; decoding runs in a worker thread, a few at a time, never on the event loop.
"""

import dataclasses
import hashlib
import io
from typing import Optional, Union

import numpy as np


@dataclasses.dataclass(frozen=True)
class Limits:
  """What one request may hold."""
  max_body_bytes: int = 64 << 20
  max_batch: int = 1024
  max_image_pixels: int = 4096 * 4096
  max_request_pixels: int = 2 * 4096 * 4096


class Rejected(Exception):
  """A request the API refuses, with its HTTP status; nothing is answered or billed."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


async def read_body(request, max_bytes: int) -> bytes:
  """The request's body, read as a stream and refused (413) as soon as it passes
  ``max_bytes``, whether or not it declared its length."""
  length = request.headers.get("content-length")
  if length and length.isdigit() and int(length) > max_bytes:
    raise Rejected(413, f"body of {length} bytes exceeds {max_bytes}")
  chunks, total = [], 0
  async for chunk in request.stream():
    total += len(chunk)
    if total > max_bytes:
      raise Rejected(413, f"body exceeds {max_bytes} bytes")
    chunks.append(chunk)
  return b"".join(chunks)


def images_fingerprint(images: np.ndarray) -> str:
  """The identity of a batch (shape and pixels): what an idempotency key is bound to, so a
  retry re-encoded differently (another multipart boundary) is still the same batch."""
  h = hashlib.sha256(str(images.shape).encode())
  h.update(np.ascontiguousarray(images).tobytes())
  return h.hexdigest()


def decode_npy(body: bytes) -> np.ndarray:
  """A ``.npy`` body as an array (no pickles), or ``Rejected`` (400)."""
  try:
    loaded = np.load(io.BytesIO(body), allow_pickle=False)
  except Exception:
    loaded = None
  if not isinstance(loaded, np.ndarray):  # Garbage, or a zip (np.load's .npz) of anything.
    if hasattr(loaded, "close"):
      loaded.close()
    raise Rejected(400, "the body is not a .npy array (send np.save of a uint8 NHWC batch, "
                        "or PNG/JPEG files as multipart/form-data)")
  return loaded


def decode_files(files: list[tuple[str, bytes]], image_size: int, limits: Limits) -> np.ndarray:
  """PNG/JPEG files -> uint8 (N, S, S, 3): each converted to RGB and resized to the served
  size, as the data sources do. Declared sizes are checked before anything is decoded."""
  from PIL import Image
  if not files:
    raise Rejected(422, "the multipart form holds no files")
  if len(files) > limits.max_batch:
    raise Rejected(413, f"{len(files)} images exceed the batch limit of {limits.max_batch}")
  opened, total = [], 0
  for name, data in files:
    try:
      im = Image.open(io.BytesIO(data))  # Reads the header only.
      width, height = im.size
    except Image.DecompressionBombError:  # PIL's own ceiling, far above ours by default.
      raise Rejected(413, f"file {name!r} declares too many pixels; at most "
                          f"{limits.max_image_pixels} pixels per image") from None
    except Exception:
      raise Rejected(422, f"file {name!r} is not a decodable image") from None
    pixels = width * height
    if pixels > limits.max_image_pixels:
      raise Rejected(413, f"file {name!r} declares {width} x {height} pixels; at most "
                          f"{limits.max_image_pixels} pixels per image")
    total += pixels
    if total > limits.max_request_pixels:
      raise Rejected(413, f"the files declare more than {limits.max_request_pixels} pixels in "
                          "all; send fewer or smaller images per request")
    opened.append((name, im))
  out = []
  for name, im in opened:
    try:
      im.draft("RGB", (image_size, image_size))  # JPEG: decode at a reduced scale when it can.
      im = im.convert("RGB")
      if im.size != (image_size, image_size):
        im = im.resize((image_size, image_size), Image.BILINEAR)
      out.append(np.asarray(im, np.uint8))
    except Exception:
      raise Rejected(422, f"file {name!r} is not a decodable image") from None
  return np.stack(out)


async def form_files(request, body: bytes, limits: Limits) -> list[tuple[str, bytes]]:
  """The files of a multipart body already read (``body``), as (filename, bytes)."""
  from starlette.requests import Request
  sent = False

  async def receive():  # Replays the body we read under the limit to the form parser.
    nonlocal sent
    if sent:
      return {"type": "http.disconnect"}
    sent = True
    return {"type": "http.request", "body": body, "more_body": False}

  try:
    form = await Request(request.scope, receive).form(max_files=limits.max_batch,
                                                      max_fields=limits.max_batch)
  except Exception as e:
    raise Rejected(400, f"the multipart form cannot be parsed ({type(e).__name__})") from None
  files = []
  for _, value in form.multi_items():
    if hasattr(value, "read"):
      files.append((getattr(value, "filename", None) or "?", await value.read()))
  return files


def check_batch(images: np.ndarray, image_size: int, limits: Limits) -> np.ndarray:
  """The batch if it is uint8 (N, S, S, 3) with 1 <= N <= max_batch, else ``Rejected``."""
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (image_size, image_size, 3):
    raise Rejected(422, f"expected uint8 images of shape (N, {image_size}, {image_size}, 3), got "
                        f"{images.dtype} {images.shape}")
  if len(images) == 0:
    raise Rejected(422, "empty batch")
  if len(images) > limits.max_batch:
    raise Rejected(413, f"{len(images)} images exceed the batch limit of {limits.max_batch}")
  return images


def decoder_kind(content_type: Optional[str]) -> Union[str, None]:
  """'multipart' or 'npy' from the request's Content-Type."""
  return "multipart" if (content_type or "").startswith("multipart/form-data") else "npy"
