"""Service exceptions become API answers: field-keyed 400s and plan 403s."""

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from orvanta_triggers.services import PlanNotAllowed


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        body = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, PlanNotAllowed):
        exc = exceptions.PermissionDenied(str(exc))
    return drf_exception_handler(exc, context)
