"""Credentials out of everything srcore prints or writes.

Store clients quote URLs in their errors (an endpoint with ``user:password@``, a presigned URL's signature and
session token in its query string), and a user may paste a URI with credentials in it. :func:`redact` is
applied to such text before it reaches a console, a report or a file; :func:`credentials_in` lets a command
refuse a URI that carries them, naming the flag, instead of copying it into every output's provenance.
"""

from __future__ import annotations

import os
import re

MASK = "***"
# variables whose values are secrets wherever they appear (the access key id too: it names the account)
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ACCESS_KEY_ID",
                    "AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN",
                    "AZURE_STORAGE_CONNECTION_STRING", "GOOGLE_OAUTH_ACCESS_TOKEN", "RAY_AUTH_TOKEN",
                    "HF_TOKEN")
# scheme://userinfo@ : the userinfo cannot hold '/', so a key's '@' after the first '/' is left alone
_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"<>]+@")
# an http(s) URL's query string (a presigned URL's signature and token); object keys may hold '?', so
# s3:// and other store URIs keep theirs
_HTTP_QUERY = re.compile(r"(\bhttps?://[^\s?#'\"<>]*)\?[^\s#'\"<>]*", re.IGNORECASE)
# signing parameters wherever they stand (a URL quoted without its scheme, a header dump)
_SIGNING = re.compile(r"((?:X-Amz-(?:Credential|Signature|Security-Token)|X-Goog-(?:Signature|Credential))=)"
                      r"[^&\s'\"<>]+", re.IGNORECASE)


def redact(text: object) -> str:
    """``text`` (anything, as ``str``) with URL userinfo, http(s) query strings, signing parameters and the
    values of the credential variables in this process's environment replaced by ``***``."""
    out = _USERINFO.sub(rf"\1{MASK}@", str(text))
    out = _HTTP_QUERY.sub(rf"\1?{MASK}", out)
    out = _SIGNING.sub(rf"\1{MASK}", out)
    for name in SECRET_VARIABLES:
        value = os.environ.get(name, "")
        if len(value) >= 4:  # a one-letter test value would mask every such letter
            out = out.replace(value, MASK)
    return out


def credentials_in(uri: str) -> bool:
    """Whether ``uri`` carries credentials in its userinfo (``s3://key:secret@bucket/prefix``)."""
    return bool(_USERINFO.match(uri.strip()))
