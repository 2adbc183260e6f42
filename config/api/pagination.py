import re

from rest_framework.pagination import PageNumberPagination

from config.errors import InvalidRequest

_POSITIVE_INT = re.compile(r"^[1-9][0-9]{0,8}$")


class LimitPagePagination(PageNumberPagination):
    """`?page=1&limit=20` (limit at most 100) -> {count, next, previous, results}.

    A `page` or `limit` that is not a positive integer is a 400 naming it (DRF would
    answer 404 for such a page and quietly use 20 for such a limit); a limit above 100
    is capped at 100; a page past the last one is a 404, as in DRF."""

    page_size = 20
    page_size_query_param = "limit"
    max_page_size = 100

    def paginate_queryset(self, queryset, request, view=None):
        for param in (self.page_query_param, self.page_size_query_param):
            value = request.query_params.get(param)
            if param == self.page_query_param and value in self.last_page_strings:
                continue  # DRF's ?page=last
            if value is not None and not _POSITIVE_INT.match(value):
                raise InvalidRequest(f"{param} must be a positive integer, not {value[:20]!r}.", param=param)
        return super().paginate_queryset(queryset, request, view)
