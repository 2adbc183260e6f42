import pytest

from wallets.selectors import ledger_audit, ledger_audit_format


def pytest_configure(config):
    config.addinivalue_line("markers", "corrupts_ledger: the test breaks an invariant on purpose; skip the audit")


@pytest.fixture(autouse=True)
def _ledger_audited_after_each_test(request):
    """Every test that touches the database ends with a full ledger audit that must pass."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None or request.node.get_closest_marker("corrupts_ledger"):
        yield
        return
    request.getfixturevalue("db")  # set the database up before us, so it is torn down after us
    yield
    report = ledger_audit()
    assert report["ok"], ledger_audit_format(report)


@pytest.fixture
def wallet(customer):
    from wallets.tests.factories import WalletFactory

    return WalletFactory(customer=customer, balance=0)
