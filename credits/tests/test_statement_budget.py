"""The statement budget of a credits debit (POST /api/v1/use-credits with an end-user
JWT), counted on a warm process outside any test transaction (transaction=True), BEGIN
and COMMIT not counted: 8. The customer (the JWT's subject) with its merchant; then (the
credit account and its counter-accounts known to the process since the first debit, not
read again) in one transaction: the credit account locked, its live grants
(the due expiries found among them), the ledger's lock of the counter-account, the ledger
write, the grant's remaining units, the debit, the outbox event.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from credits.models import Grant
from credits.services import credits_grant

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_a_credits_debit_costs_at_most_eight_statements(customer, jwt_client):
    credits_grant(customer=customer, units=10, source=Grant.Source.MERCHANT, reason="budget")
    client = jwt_client(customer)

    def debit():
        return client.post("/api/v1/use-credits", {"units": 1}, format="json")

    assert debit().status_code == 200
    with CaptureQueriesContext(connection) as ctx:
        response = debit()
    assert response.status_code == 200, response.content
    assert response.json() == {"data": {"balance": 8}}
    statements = [q["sql"] for q in ctx.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]
    listing = "\n".join(f"{n}. {sql[:300]}" for n, sql in enumerate(statements, 1))
    assert len(statements) <= 8, f"{len(statements)} statements:\n{listing}"
