"""The photo of a POST /predict request, read into memory within a size limit: the raw body
(`Content-Type: image/...`) or the field `image` of a multipart form.

Nothing is written to disk. Starlette's own form parser (`request.form()`) spools every file part
larger than 1 MB to a temporary file, so the body is read here (at most `limit` bytes, within a
time limit) and a multipart body is parsed in memory by python-multipart's streaming parser, the
one Starlette uses underneath.
"""
from __future__ import annotations

import asyncio

IMAGE_FIELD = "image"
BODY_NAME = "the uploaded photo"  # how errors name a photo sent as the raw body


class UploadError(Exception):
    """A request whose photo cannot be read: an HTTP status and one sentence for people."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def megabytes(count: int) -> str:
    return f"{count / 1e6:g} MB"


async def read_body(request, limit: int, seconds: float) -> bytearray:
    """The request's body, refused (413) as soon as it is known to exceed `limit` bytes, from its
    Content-Length or while it arrives, and (408) when it takes longer than `seconds` to arrive:
    a slow sender would otherwise hold its place in the queue for ever."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UploadError(413, f"the upload is {int(declared):,} bytes, over the limit of {megabytes(limit)}")
    from starlette.requests import ClientDisconnect

    async def every_chunk() -> bytearray:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise UploadError(413, f"the upload is over the limit of {megabytes(limit)}")
        return body

    try:
        return await asyncio.wait_for(every_chunk(), seconds)
    except asyncio.TimeoutError:
        raise UploadError(408, f"the upload took longer than {seconds:g} s to arrive") from None
    except ClientDisconnect:  # nobody is left to read the answer; said so in the log, without a traceback
        raise UploadError(400, "the client went away before its upload had arrived") from None


class FieldReader:
    """python-multipart's callbacks, keeping the bytes and file name of the first part named `field`."""

    def __init__(self, field: str):
        self.field = field.encode()
        self.data, self.filename, self.complete = None, None, False
        self._headers, self._name, self._value, self._wanted = {}, b"", b"", False

    def callbacks(self) -> dict:
        return {"on_part_begin": self.part_begins, "on_header_field": self.header_name,
                "on_header_value": self.header_value, "on_header_end": self.header_ends,
                "on_headers_finished": self.headers_end, "on_part_data": self.part_data,
                "on_part_end": self.part_ends}

    def part_begins(self):
        self._headers, self._wanted = {}, False

    def header_name(self, data, start, end):
        self._name += data[start:end]

    def header_value(self, data, start, end):
        self._value += data[start:end]

    def header_ends(self):
        self._headers[self._name.lower()] = self._value
        self._name = self._value = b""

    def headers_end(self):
        from python_multipart.multipart import parse_options_header

        options = parse_options_header(self._headers.get(b"content-disposition", b""))[1]
        if options.get(b"name") == self.field and self.data is None:
            self._wanted, self.data = True, bytearray()
            filename = options.get(b"filename")
            self.filename = filename.decode("utf-8", "replace") if filename else None

    def part_data(self, data, start, end):
        if self._wanted:
            self.data += data[start:end]

    def part_ends(self):
        if self._wanted:
            self.complete = True


def multipart_field(body: bytes, content_type: str, field: str) -> tuple[bytearray, str | None]:
    """The bytes of the first part named `field` of a multipart/form-data body, and its file name."""
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if not boundary:
        raise UploadError(400, "the multipart form has no boundary in its Content-Type header")
    reader = FieldReader(field)
    parser = MultipartParser(boundary, reader.callbacks())
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise UploadError(400, f"the multipart form cannot be read ({exc})") from None
    if reader.data is None:
        raise UploadError(400, f"the multipart form has no field named '{field}' (send the photo in it)")
    if not reader.complete:
        raise UploadError(400, f"the multipart form ends inside its field '{field}' (the upload was cut short?)")
    return reader.data, reader.filename


async def uploaded_photo(request, limit: int, seconds: float) -> tuple[bytearray, str]:
    """The encoded photo of a request and the name its errors give it (its file name in a form)."""
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";")[0].strip().lower()
    if not (kind.startswith("image/") or kind == "multipart/form-data"):
        said = f"Content-Type {kind}" if kind else "no Content-Type"
        raise UploadError(415, f"the request has {said}: send the photo's bytes as image/jpeg, image/png, ... "
                               f"or as the field '{IMAGE_FIELD}' of a multipart/form-data form")
    body = await read_body(request, limit, seconds)
    if not body:
        raise UploadError(400, "the request body is empty: send a photo")
    if kind != "multipart/form-data":
        return body, BODY_NAME
    data, filename = multipart_field(body, content_type, IMAGE_FIELD)
    if not data:
        raise UploadError(400, f"the field '{IMAGE_FIELD}' of the form is empty: choose a photo")
    return data, filename or BODY_NAME
