"""What Django's error reports (the DEBUG page, emailed reports) may show."""

from __future__ import annotations

import re
from typing import Any

from django.views.debug import SafeExceptionReporterFilter


class ErrorReportFilter(SafeExceptionReporterFilter):
    """Django's filter, hiding too:

    - every setting and request variable whose name says PROXY: a proxy's URL may carry
      its password (``http://user:password@proxy:3128``);
    - in the traceback's frames, every local variable (and dictionary key within one)
      named as those are (``password``, ``token``, ``proxy``, ``proxies``…), where Django
      hides locals only in functions marked ``sensitive_variables``. Blink's own code
      and the libraries it calls (ldap3, requests, msal, twilio) hold secrets in such
      names.
    """

    hidden_settings = re.compile(
        SafeExceptionReporterFilter.hidden_settings.pattern + "|PROXY|PROXIES", flags=re.IGNORECASE)

    def get_traceback_frame_variables(self, request: Any, tb_frame: Any) -> Any:
        return [(name, self.cleanse_setting(name, value))
                for name, value in super().get_traceback_frame_variables(request, tb_frame)]
