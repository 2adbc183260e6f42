"""Pages payers pass through on their way to and back from Nepal's wallets (/pay/...)."""

from django.urls import path

from payments.nepal_checkout import esewa_checkout, esewa_failure, esewa_return, khalti_return

urlpatterns = [
    path("esewa/<uuid:payment_id>", esewa_checkout, name="esewa-checkout"),
    path("esewa/<uuid:payment_id>/return", esewa_return, name="esewa-return"),
    path("esewa/<uuid:payment_id>/failure", esewa_failure, name="esewa-failure"),
    path("khalti/<uuid:payment_id>/return", khalti_return, name="khalti-return"),
]
