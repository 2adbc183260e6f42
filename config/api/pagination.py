from rest_framework.pagination import PageNumberPagination


class LimitPagePagination(PageNumberPagination):
    """`?page=1&limit=20` (limit at most 100) -> {count, next, previous, results}."""

    page_size = 20
    page_size_query_param = "limit"
    max_page_size = 100
