from django.conf import settings
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .serializers import MeSerializer


class MeView(APIView):
    """The authenticated user, as identified by the Bearer access token.

    Loaded from the database on every request (the default authentication),
    so a deactivated or deleted user is refused at once. For views that only
    need to know who is calling, config.jwt_tokens.ClaimsAuthentication
    answers from the token's claims instead: 1.5 to 2 times the throughput
    on this endpoint (2 to 3 times before the user lookup was made lean), at
    the cost explained there (roles/app/README.md, "Tuned defaults").
    """

    def get(self, request):
        return Response(MeSerializer(request.user).data)


# Clients may cache the key set this long (seconds): short, because a
# rotation adds a key that must be fetched before tokens signed with it
# arrive (the graceful rotation leaves this much time between the two).
JWKS_MAX_AGE = 300


class JwksView(APIView):
    """GET /.well-known/jwks.json: the keyring's public keys, signing and
    still-verifying, with kid, alg and use; 404 when the keyring is HS256
    only (a shared secret is never published)."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request):
        keys = settings.JWT_KEYRING.jwks()
        if not keys["keys"]:
            raise NotFound("This API signs its tokens with a shared secret; there are no public keys.")
        return Response(keys, headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"})
