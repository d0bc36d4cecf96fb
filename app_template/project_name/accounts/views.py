from rest_framework.response import Response
from rest_framework.views import APIView

from .serializers import MeSerializer


class MeView(APIView):
    """The authenticated user, as identified by the Bearer access token."""

    def get(self, request):
        return Response(MeSerializer(request.user).data)
