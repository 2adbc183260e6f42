"""Local fakes of eSewa (ePay v2) and Khalti (KPG-2): small HTTP servers on 127.0.0.1 that
keep each transaction's state and answer as the providers' docs say, failures included,
with the recorded shapes in nepal_payloads/. Our code runs for real against them (its
requests, timeouts and parsing); only the far end is a fake.

They are written from the providers' docs, not from Paydesk's code: the eSewa fake checks
the form's signature and signs its success data with its own HMAC, so a test passes only
if Paydesk and "eSewa" agree on the scheme.
"""

import base64
import copy
import hashlib
import hmac
import json
import secrets
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

PAYLOADS = Path(__file__).parent / "nepal_payloads"
ESEWA_TEST_SECRET = "8gBm/:&EnhH.1/q"
ESEWA_RETURN_FIELDS = "transaction_code,status,total_amount,transaction_uuid,product_code,signed_field_names"


def payload(name: str) -> dict:
    """A recorded response body, e.g. payload("khalti/lookup_completed")."""
    return json.loads((PAYLOADS / f"{name}.json").read_text())


class FakeServer:
    """Routes (method, path) to a method of the subclass; records every request.

    `delay` (seconds) holds every answer back (a provider too slow for our timeout), or
    `slow` = {path prefix: seconds} those paths' only; the request is still carried out
    after the wait, as a provider that answers late still does the work. `down` =
    (status, body) answers every request with that (a provider that is down)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.delay = 0.0
        self.slow: dict[str, float] = {}
        self.down: tuple[int, object] | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                ctype = self.headers.get("Content-Type", "")
                if "json" in ctype and raw:
                    body = json.loads(raw)
                else:
                    body = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                request = {
                    "method": self.command,
                    "path": parts.path,
                    "query": {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
                    "headers": dict(self.headers),
                    "body": body,
                }
                fake.requests.append(request)
                wait = fake.delay + sum(t for prefix, t in fake.slow.items() if parts.path.startswith(prefix))
                if wait:
                    time.sleep(wait)
                status, answer, headers = fake.down + ({},) if fake.down else fake.route(request)
                data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "text/html" if isinstance(answer, str) else "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout test)

            do_GET = do_POST = _handle

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def route(self, request) -> tuple[int, object, dict]:
        raise NotImplementedError

    def calls(self, path_prefix: str) -> list[dict]:
        return [r for r in self.requests if r["path"].startswith(path_prefix)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _esewa_sign(message: str, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()).decode()


class FakeEsewa(FakeServer):
    """eSewa ePay v2: the form endpoint and the status check.

    The form is checked as eSewa documents it (every field present, total_amount = amount
    + tax + charges, the signature over signed_field_names) and opens a PENDING
    transaction; the test then plays the payer with complete() / cancel()."""

    FORM = "/api/epay/main/v2/form"
    STATUS = "/api/epay/transaction/status/"
    FORM_FIELDS = (
        "amount",
        "tax_amount",
        "total_amount",
        "transaction_uuid",
        "product_code",
        "product_service_charge",
        "product_delivery_charge",
        "success_url",
        "failure_url",
        "signed_field_names",
        "signature",
    )

    def __init__(self, *, secret: str = ESEWA_TEST_SECRET, product_code: str = "EPAYTEST"):
        self.secret = secret
        self.product_code = product_code
        self.transactions: dict[str, dict] = {}
        # Answer the status check with this recorded body instead (ids filled in): a test's override.
        self.status_answer: tuple[int, dict] | None = None
        super().__init__()

    def route(self, request):
        if (request["method"], request["path"]) == ("POST", self.FORM):
            return self._form(request["body"])
        if (request["method"], request["path"]) == ("GET", self.STATUS):
            return self._status(request["query"])
        return 404, "<h1>Not Found</h1>", {}

    def _form(self, form: dict):
        missing = [f for f in self.FORM_FIELDS if not form.get(f)]
        if missing:
            return 400, {"code": 0, "error_message": f"Required fields missing: {', '.join(missing)}"}, {}
        names = form["signed_field_names"].split(",")
        expected = _esewa_sign(",".join(f"{n}={form[n]}" for n in names), self.secret)
        if names[:3] != ["total_amount", "transaction_uuid", "product_code"] or form["signature"] != expected:
            return 400, {"code": 0, "error_message": "Invalid payload signature."}, {}
        parts = ("amount", "tax_amount", "product_service_charge", "product_delivery_charge")
        if sum(Decimal(form[p]) for p in parts) != Decimal(form["total_amount"]):
            return 400, {"code": 0, "error_message": "Total amount mismatch."}, {}
        if form["product_code"] != self.product_code:
            return 400, {"code": 0, "error_message": "Invalid product code."}, {}
        self.transactions.setdefault(
            form["transaction_uuid"],
            {"form": form, "status": "PENDING", "ref_id": None, "total_amount": Decimal(form["total_amount"])},
        )
        return 200, "<html><body>eSewa login</body></html>", {}

    def _status(self, query: dict):
        uuid = query.get("transaction_uuid", "")
        txn = self.transactions.get(uuid)
        try:
            amount = Decimal(query.get("total_amount", ""))
        except ArithmeticError:
            amount = None
        if txn is None or amount != txn["total_amount"] or query.get("product_code") != self.product_code:
            body = payload("esewa/status_not_found")
            body.update(product_code=query.get("product_code"), transaction_uuid=uuid)
            body["total_amount"] = float(amount) if amount is not None else None
            return 200, body, {}
        if self.status_answer is not None:
            status, body = self.status_answer
            body = {**copy.deepcopy(body), "transaction_uuid": uuid}
            return status, body, {}
        name = {"COMPLETE": "complete", "CANCELED": "canceled", "FULL_REFUND": "full_refund"}.get(
            txn["status"], txn["status"].lower()
        )
        body = payload(f"esewa/status_{name}")
        body.update(
            product_code=self.product_code,
            transaction_uuid=uuid,
            total_amount=float(txn["total_amount"]),
            status=txn["status"],
            ref_id=txn["ref_id"],
        )
        return 200, body, {}

    def complete(self, uuid: str, *, amount_text: str | None = None) -> str:
        """The payer pays: COMPLETE, and the success_url eSewa sends them to, with its
        signed base64 data (total_amount written as eSewa writes it: "1000.0")."""
        txn = self.transactions[uuid]
        txn.update(status="COMPLETE", ref_id="000" + secrets.token_hex(2).upper())
        return txn["form"]["success_url"] + "?data=" + self.success_data(uuid, amount_text=amount_text)

    def success_data(self, uuid: str, *, amount_text: str | None = None, secret: str | None = None, **over) -> str:
        txn = self.transactions[uuid]
        data = {
            "transaction_code": txn["ref_id"] or "000AWEO",
            "status": "COMPLETE",
            "total_amount": amount_text or f"{txn['total_amount']:.1f}",
            "transaction_uuid": uuid,
            "product_code": self.product_code,
            "signed_field_names": ESEWA_RETURN_FIELDS,
            **over,
        }
        message = ",".join(f"{n}={data[n]}" for n in data["signed_field_names"].split(","))
        data["signature"] = _esewa_sign(message, secret or self.secret)
        return base64.b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()

    def set_status(self, uuid: str, status: str, *, ref_id: str | None = "0KDL6NA") -> None:
        self.transactions[uuid].update(status=status, ref_id=ref_id)


class FakeKhalti(FakeServer):
    """Khalti KPG-2: initiate, lookup and the merchant refund API, with `Authorization:
    Key <secret>` checked on every call. The test plays the payer with pay() / set_status()."""

    INITIATE = "/api/v2/epayment/initiate/"
    LOOKUP = "/api/v2/epayment/lookup/"
    REFUND = "/api/merchant-transaction/"
    # HTTP status of each lookup status (the docs' "Payment Status Code" table).
    LOOKUP_HTTP = {"Expired": 400, "User canceled": 400}

    def __init__(self, *, secret: str = "test_secret_key_f59e8b7d18b4499ca40f68195a846e9b"):
        self.secret = secret
        self.payments: dict[str, dict] = {}
        # {path prefix: (status, body)}: answer that path so, once per entry in the list.
        self.fail_next: dict[str, list[tuple[int, object]]] = {}
        super().__init__()

    @property
    def base_url(self) -> str:
        return self.url + "/api/v2/"

    def route(self, request):
        if request["headers"].get("Authorization") != f"Key {self.secret}":
            return 401, payload("khalti/error_invalid_token"), {}
        for prefix, answers in self.fail_next.items():
            if request["path"].startswith(prefix) and answers:
                status, body = answers.pop(0)
                return status, body, {}
        if request["method"] != "POST":
            return 405, {"detail": 'Method "GET" not allowed.'}, {}
        if request["path"] == self.INITIATE:
            return self._initiate(request["body"])
        if request["path"] == self.LOOKUP:
            return self._lookup(request["body"])
        if request["path"].startswith(self.REFUND) and request["path"].endswith("/refund/"):
            return self._refund(request["path"][len(self.REFUND) : -len("/refund/")], request["body"])
        return 404, {"detail": "Not found."}, {}

    def _initiate(self, body: dict):
        errors = {}
        for name in ("return_url", "website_url", "purchase_order_id", "purchase_order_name"):
            if not str(body.get(name) or "").strip():
                errors[name] = ["This field may not be blank."]
        for name in ("return_url", "website_url"):
            if name not in errors and not str(body[name]).startswith(("http://", "https://")):
                errors[name] = ["Enter a valid URL."]
        amount = body.get("amount")
        if not isinstance(amount, int) or isinstance(amount, bool):
            errors["amount"] = ["A valid integer is required."]
        elif amount < 1000:
            errors["amount"] = payload("khalti/error_amount_too_small")["amount"]
        if errors:
            return 400, {**errors, "error_key": "validation_error"}, {}
        pidx = secrets.token_urlsafe(16)[:22]
        self.payments[pidx] = {
            "request": body,
            "status": "Initiated",
            "total_amount": amount,
            "transaction_id": None,
            "refunded_amount": 0,
        }
        answer = payload("khalti/initiate")
        answer.update(pidx=pidx, payment_url=f"{self.url}/?pidx={pidx}")
        return 200, answer, {}

    def _lookup(self, body: dict):
        p = self.payments.get(str(body.get("pidx")))
        if p is None:
            return 400, payload("khalti/error_not_found"), {}
        answer = payload("khalti/lookup_completed")
        answer.update(
            pidx=body["pidx"],
            total_amount=p["total_amount"],
            status=p["status"],
            transaction_id=p["transaction_id"],
            refunded=p["status"] in ("Refunded", "Partially Refunded"),
        )
        return self.LOOKUP_HTTP.get(p["status"], 200), answer, {}

    def _refund(self, transaction_id: str, body: dict):
        p = next((p for p in self.payments.values() if p["transaction_id"] == transaction_id), None)
        if p is None or p["status"] not in ("Completed", "Partially Refunded"):
            return 400, {"detail": "Transaction cannot be refunded.", "error_key": "validation_error"}, {}
        left = p["total_amount"] - p["refunded_amount"]
        amount = body.get("amount", left)
        if not isinstance(amount, int) or not 0 < amount <= left:
            return 400, {"amount": ["Invalid refund amount."], "error_key": "validation_error"}, {}
        p["refunded_amount"] += amount
        p["status"] = "Refunded" if p["refunded_amount"] == p["total_amount"] else "Partially Refunded"
        return 200, payload("khalti/refund_success"), {}

    def pay(self, pidx: str) -> str:
        """The payer pays: Completed, and the return_url Khalti sends them back to."""
        p = self.payments[pidx]
        p.update(status="Completed", transaction_id=secrets.token_urlsafe(16)[:22])
        return self.return_url(pidx)

    def return_url(self, pidx: str, **over) -> str:
        """return_url with the docs' callback parameters (callback_completed.txt's names)."""
        p = self.payments[pidx]
        txn = p["transaction_id"] or ""
        query = {
            "pidx": pidx,
            "txnId": txn,
            "amount": p["total_amount"],
            "total_amount": p["total_amount"],
            "status": "Completed" if p["status"] == "Completed" else p["status"],
            "mobile": "98XXXXX904" if txn else "",
            "tidx": txn,
            "purchase_order_id": p["request"]["purchase_order_id"],
            "purchase_order_name": p["request"]["purchase_order_name"],
            "transaction_id": txn,
            **over,
        }
        return p["request"]["return_url"] + "?" + urlencode(query)

    def set_status(self, pidx: str, status: str) -> None:
        self.payments[pidx]["status"] = status
