from payments.identity.admin import *  # noqa: F401,F403  (registers identity's admin classes)
