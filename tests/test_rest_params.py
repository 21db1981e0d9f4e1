"""
Tests for L{rest_compat.params}: bodies as JSON, urlencoded and multipart
forms for any method, query strings, and the loosely typed legacy values.
"""

from __future__ import annotations

from io import BytesIO
from urllib.parse import unquote_to_bytes

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from am.core.errors import BadRequest
from rest_compat import params
from rest_compat.params import BodyTooLarge
from rest_compat.testing import FakeRequest


def _request(body: bytes, uri: bytes = b"/x", contentType: bytes = b"") -> FakeRequest:
    request = FakeRequest(b"PUT", uri, body, None, None)
    if contentType:
        request.requestHeaders.setRawHeaders(b"content-type", [contentType])
    return request


class BodyTests(SynchronousTestCase):
    """
    Turning a request into one dictionary of parameters.
    """

    def test_formForAnyMethod(self) -> None:
        """
        A urlencoded PUT body is parsed (Twisted parses only POST); repeated
        keys give lists, C{+} is a space, a key without C{=} is empty.
        """
        request = _request(b"a=1&b=x+y%21&k=1&k=2&flag", contentType=b"application/x-www-form-urlencoded")
        self.assertEqual(params.readParams(request), {"a": "1", "b": "x y!", "k": ["1", "2"], "flag": ""})

    def test_queryAndBodyMerge(self) -> None:
        """
        Body parameters override query parameters.
        """
        request = _request(b"a=body", uri=b"/x?a=query&q=1")
        self.assertEqual(params.readParams(request), {"a": "body", "q": "1"})

    def test_jsonByContentTypeOrShape(self) -> None:
        """
        JSON is recognised by its content type, or by a leading C{{} even when
        labelled as a form (C{curl -d}).
        """
        for contentType in (
            b"application/json", b"application/json; charset=utf-8", b"application/x-www-form-urlencoded", b"",
        ):
            request = _request(b' {"a": [1, 2], "b": {"c": null}}', contentType=contentType)
            self.assertEqual(params.readParams(request), {"a": [1, 2], "b": {"c": None}}, contentType)

    def test_jsonMustBeAnObject(self) -> None:
        """
        A JSON array or scalar body is refused.
        """
        for body in (b"[1]", b'"x"', b"3"):
            self.assertRaises(BadRequest, params.readParams, _request(body, contentType=b"application/json"))

    def test_emptyBody(self) -> None:
        """
        An empty body (or only whitespace) gives no parameters.
        """
        self.assertEqual(params.readParams(_request(b"  \n", contentType=b"application/json")), {})

    def test_multipart(self) -> None:
        """
        multipart/form-data bodies are parsed for every method.
        """
        body = (
            b"--XX\r\nContent-Disposition: form-data; name=\"status\"\r\n\r\nstarted\r\n"
            b"--XX\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nh\xc3\xa9\r\n"
            b"--XX\r\nContent-Disposition: form-data\r\n\r\nnameless\r\n--XX--\r\n"
        )
        request = _request(body, contentType=b"multipart/form-data; boundary=XX")
        self.assertEqual(params.readParams(request), {"status": "started", "note": "h\xe9"})

    def test_brokenMultipart(self) -> None:
        """
        A multipart body that is not is 400.
        """
        request = _request(b"garbage", contentType=b"multipart/form-data")
        self.assertRaises(BadRequest, params.readParams, request)

    def test_tooLarge(self) -> None:
        """
        Bodies over the limit, or announced as such, raise L{BodyTooLarge}.
        """
        self.assertRaises(BodyTooLarge, params.readParams, _request(b"x" * 11), 10)
        announced = _request(b"")
        announced.requestHeaders.setRawHeaders(b"content-length", [b"11"])
        self.assertRaises(BodyTooLarge, params.readParams, announced, 10)
        bad = _request(b"")
        bad.requestHeaders.setRawHeaders(b"content-length", [b"eleven"])
        self.assertRaises(BadRequest, params.readParams, bad, 10)

    def test_noContent(self) -> None:
        """
        A request object without content has no body.
        """
        request = _request(b"")
        request.content = None
        self.assertEqual(params.readBody(request), b"")

    @settings(max_examples=500, deadline=None)
    @given(st.lists(st.one_of(
        st.binary(max_size=4), st.sampled_from([b"%", b"\\", b"\\x", b"%4", b"%41", b"%e2%82%AC", b"%zz", b"%%", b"+"]),
    ), max_size=12))
    def test_unquoteAsTheStandardLibrary(self, pieces: list[bytes]) -> None:
        """
        L{params.unquote} gives what C{urllib.parse.unquote_to_bytes} gives,
        escapes, stray percent signs and backslashes alike.
        """
        raw = b"".join(pieces)
        self.assertEqual(params.unquote(raw), unquote_to_bytes(raw))

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=300), st.sampled_from([b"", b"application/json", b"application/x-www-form-urlencoded",
                                                     b"multipart/form-data; boundary=a", b"text/plain"]))
    def test_anyBytesGiveParametersOrBadRequest(self, body: bytes, contentType: bytes) -> None:
        """
        Whatever the bytes, the result is a dict or a L{BadRequest}.
        """
        try:
            result = params.readParams(_request(body, uri=b"/x?" + body[:50], contentType=contentType))
        except BadRequest:
            return
        self.assertIsInstance(result, dict)


class ValueTests(SynchronousTestCase):
    """
    Typed access to single values.
    """

    def test_flag(self) -> None:
        """
        Legacy truthiness, fixed: "0", "false", 0 and false are false.
        """
        for value in ("0", "false", "False", " no ", "off", "", 0, 0.0, False, None, "null"):
            self.assertFalse(params.flag("shared", value), value)
        for value in ("1", "true", "YES", "on", 1, 2, True):
            self.assertTrue(params.flag("shared", value), value)
        for value in ("maybe", [1], {"a": 1}):
            self.assertRaises(BadRequest, params.flag, "shared", value)

    def test_options(self) -> None:
        """
        C{options} may be an object, a JSON string or a C{k=v&k=v} string.
        """
        expected = {"shared": "1", "nodes": "1,2"}
        self.assertEqual(params.parseOptions({"shared": "1", "nodes": "1,2"}), expected)
        self.assertEqual(params.parseOptions('{"shared": "1", "nodes": "1,2"}'), expected)
        self.assertEqual(params.parseOptions("shared=1&nodes=1,2"), expected)
        self.assertEqual(params.parseOptions("shared=1&nodes=1,2&"), expected)
        self.assertEqual(params.parseOptions("a=b=c"), {"a": "b=c"})
        self.assertEqual(params.parseOptions(""), {})
        self.assertEqual(params.parseOptions(None), {})

    def test_badOptions(self) -> None:
        """
        Unparseable options are 400 with the legacy C{sc2} code.
        """
        for value in ("novalue", "=x", "{broken", "[1]", 5, ["a"]):
            error = self.assertRaises(BadRequest, params.parseOptions, value)
            self.assertEqual(error.extra["code"], "sc2", value)
            self.assertEqual(error.extra["parameter"], "options")

    def test_nodeList(self) -> None:
        """
        C{nodes} is a comma string or a list; empty means no preselection.
        """
        self.assertEqual(params.nodeList("12, 15,"), ["12", "15"])
        self.assertEqual(params.nodeList(["12", 15]), ["12", "15"])
        self.assertEqual(params.nodeList(7), ["7"])
        self.assertIsNone(params.nodeList(""))
        self.assertIsNone(params.nodeList(None))
        for bad in ({"a": 1}, [None], [["1"]], True, [True]):
            self.assertRaises(BadRequest, params.nodeList, bad)

    def test_text(self) -> None:
        """
        Strings and numbers are text; structures are refused.
        """
        self.assertEqual(params.text({"a": 5}, "a"), "5")
        self.assertEqual(params.text({}, "a", "d"), "d")
        for bad in ([1], {"b": 1}, True):
            self.assertRaises(BadRequest, params.text, {"a": bad}, "a")

    def test_intParam(self) -> None:
        """
        Integers from numbers or strings (ASCII digits); absent or null means
        the default, an empty string is not an integer.
        """
        self.assertEqual(params.intParam({"a": " 12 "}, "a"), 12)
        self.assertEqual(params.intParam({"a": None}, "a", 3), 3)
        for bad in ("", " ", "\u0663", "1e3"):
            self.assertRaises(BadRequest, params.intParam, {"a": bad}, "a", 3)
        self.assertEqual(params.intParam({}, "a", 3), 3)
        self.assertRaises(BadRequest, params.intParam, {"a": "1.5"}, "a")
        self.assertRaises(BadRequest, params.intParam, {"a": "0"}, "a", 1, 1)

    def test_jsonValue(self) -> None:
        """
        Structured fields come as JSON strings (forms) or as values (JSON bodies).
        """
        self.assertEqual(params.jsonValue("i", "[1]", list), [1])
        self.assertEqual(params.jsonValue("i", [1], list), [1])
        self.assertEqual(params.jsonValue("i", "", list), [])
        self.assertRaises(BadRequest, params.jsonValue, "i", "{}", list)
        self.assertRaises(BadRequest, params.jsonValue, "i", "[", list)
        self.assertRaises(BadRequest, params.jsonValue, "i", 3, dict)

    def test_requireParams(self) -> None:
        """
        Missing parameters are named, with what was provided.
        """
        error = self.assertRaises(BadRequest, params.requireParams, {"b": 1}, ("a", "b", "c"), ("d",))
        self.assertEqual(error.extra["missing"], ["a", "c"])
        self.assertEqual(error.message, "Parameters missing (required: a, b, c | optional: d, provided: b).")


class FormParsingTests(SynchronousTestCase):
    """
    The urlencoded parser itself.
    """

    def test_percentAndPlus(self) -> None:
        """
        Percent escapes decode to UTF-8; invalid UTF-8 is 400.
        """
        self.assertEqual(params.parseForm(b"a=%C3%A9&b=1+2"), {"a": "\xe9", "b": "1 2"})
        self.assertRaises(BadRequest, params.parseForm, b"a=%ff")
        self.assertRaises(BadRequest, params.parseForm, b"%ff=a")

    def test_query(self) -> None:
        """
        Only the part after C{?} is the query.
        """
        self.assertEqual(params.parseQuery(b"/v1/x?results=3"), {"results": "3"})
        self.assertEqual(params.parseQuery(b"/v1/x"), {})

    def test_contentIsRewound(self) -> None:
        """
        Reading the body leaves the content at its start for others.
        """
        request = _request(b"a=1")
        params.readParams(request)
        self.assertEqual(request.content.read(), b"a=1")
        self.assertIsInstance(request.content, BytesIO)
