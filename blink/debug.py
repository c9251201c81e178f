"""What Django's error reports (the DEBUG page, emailed reports) may show."""

from __future__ import annotations

import re

from django.views.debug import SafeExceptionReporterFilter


class ErrorReportFilter(SafeExceptionReporterFilter):
    """Django's filter, hiding too every setting and request variable whose name says
    PROXY: a proxy's URL may carry its password (``http://user:password@proxy:3128``)."""

    hidden_settings = re.compile(SafeExceptionReporterFilter.hidden_settings.pattern + "|PROXY",
                                 flags=re.IGNORECASE)
