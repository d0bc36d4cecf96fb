from django.conf import settings
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.settings import api_settings

from config.jwt_tokens import IDENTITY_CLAIMS, ClaimsAuthentication

from .serializers import MeSerializer


class MeView(APIView):
    """The authenticated user, as identified by the Bearer access token.

    Answered from the token's claims, without a database query
    (config.jwt_tokens.ClaimsAuthentication explains the trade-off). A token
    issued before tokens carried those claims is answered from the database.
    """

    authentication_classes = [ClaimsAuthentication]

    def get(self, request):
        token = request.auth
        if all(claim in token for claim in IDENTITY_CLAIMS):
            user_id = token[api_settings.USER_ID_CLAIM]
            return Response({
                # simplejwt writes the id as a string; the API has always
                # answered with the model's (integer) id.
                "id": int(user_id) if user_id.isdigit() else user_id,
                "username": token["username"],
                "email": token["email"],
            })
        user = JWTAuthentication().get_user(token)
        return Response(MeSerializer(user).data)


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
