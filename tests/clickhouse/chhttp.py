"""Minimal ClickHouse HTTP client (urllib only) for load.py / dump.py / selfcheck."""
import base64
import urllib.error
import urllib.parse
import urllib.request


class ClickHouseError(Exception):
    def __init__(self, status, code, message):
        super().__init__("HTTP %s, code %s: %s" % (status, code, message.strip()))
        self.status, self.code, self.message = status, code, message


class Client:
    def __init__(self, url, database=None):
        u = urllib.parse.urlsplit(url)
        self.base = urllib.parse.urlunsplit((u.scheme, u.hostname + (":%d" % u.port if u.port else ""),
                                             u.path or "/", "", ""))
        self.auth = None
        if u.username:
            cred = "%s:%s" % (urllib.parse.unquote(u.username), urllib.parse.unquote(u.password or ""))
            self.auth = "Basic " + base64.b64encode(cred.encode()).decode()
        self.database = database
        self.bytes_in = 0

    def request(self, body=b"", **params):
        """POST body with URL params; returns (bytes, headers). Raises ClickHouseError."""
        if self.database and "database" not in params:
            params["database"] = self.database
        url = self.base + ("?" + urllib.parse.urlencode(params) if params else "")
        if isinstance(body, str):
            body = body.encode("utf-8")
        req = urllib.request.Request(url, data=body, method="POST")
        if self.auth:
            req.add_header("Authorization", self.auth)
        try:
            with urllib.request.urlopen(req) as r:
                data = r.read()
                self.bytes_in += len(data)
                return data, r.headers
        except urllib.error.HTTPError as e:
            msg = e.read().decode("utf-8", "replace")
            raise ClickHouseError(e.code, e.headers.get("X-ClickHouse-Exception-Code"), msg) from None

    def query(self, sql, **params):
        return self.request(sql, **params)[0]

    def insert(self, statement_with_format, data, **params):
        """INSERT ... FORMAT F in the URL, the data in the body (what clients do)."""
        return self.request(data, query=statement_with_format, **params)
