"""simplejwt over the keyring (config/jwt_keys.py), through the extension
points simplejwt offers: a token backend, token classes that use it, and
serializers built on those classes. The settings point simplejwt at them
(AUTH_TOKEN_CLASSES and the *_SERIALIZER settings in config/settings/base.py).

Use these classes, not simplejwt's own, to make tokens in your code: for
example `RefreshToken.for_user(user)` from this module.
"""
import jwt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _
from jwt import ExpiredSignatureError, InvalidAlgorithmError, InvalidTokenError
from rest_framework.exceptions import AuthenticationFailed, ValidationError
from rest_framework_simplejwt import authentication, serializers, tokens
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import TokenBackendError, TokenBackendExpiredToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken


class KeyringTokenBackend(TokenBackend):
    """Signs with the keyring's signing key and names it in the `kid` header;
    verifies with the key the token's `kid` names, with that key's algorithm
    only. A token without a known `kid` is invalid."""

    def __init__(self):
        super().__init__(
            "HS256",  # unused: every key carries its own algorithm
            audience=api_settings.AUDIENCE,
            issuer=api_settings.ISSUER,
            leeway=api_settings.LEEWAY,
            json_encoder=api_settings.JSON_ENCODER,
        )

    @property
    def keyring(self):
        # Looked up on each use, so that tests can swap it with override_settings.
        return settings.JWT_KEYRING

    def encode(self, payload):
        key = self.keyring.signing
        claims = payload.copy()
        if self.audience is not None:
            claims["aud"] = self.audience
        if self.issuer is not None:
            claims["iss"] = self.issuer
        return jwt.encode(claims, key.signing_key, algorithm=key.alg,
                          headers={"kid": key.kid}, json_encoder=self.json_encoder)

    def decode(self, token, verify=True):
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except InvalidTokenError as error:
            raise TokenBackendError(_("Token is invalid")) from error
        key = self.keyring.get(kid)
        if key is None:
            raise TokenBackendError(_("Token is invalid"))
        try:
            return jwt.decode(
                token,
                key.verifying_key,
                algorithms=[key.alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.get_leeway(),
                options={"verify_aud": self.audience is not None, "verify_signature": verify},
            )
        except InvalidAlgorithmError as error:
            raise TokenBackendError(_("Invalid algorithm specified")) from error
        except ExpiredSignatureError as error:
            raise TokenBackendExpiredToken(_("Token is expired")) from error
        except InvalidTokenError as error:
            raise TokenBackendError(_("Token is invalid")) from error


token_backend = KeyringTokenBackend()


class AccessToken(tokens.AccessToken):
    _token_backend = token_backend


# Who the token belongs to, written into every token at login and copied
# into each access token made from the refresh token. A view that only needs
# to know who is calling reads them instead of loading the user from the
# database on every request (ClaimsAuthentication below).
IDENTITY_CLAIMS = ("username", "email")


class RefreshToken(tokens.RefreshToken):
    _token_backend = token_backend
    access_token_class = AccessToken

    @classmethod
    def for_user(cls, user):
        token = super().for_user(user)
        token["username"] = user.get_username()
        token["email"] = user.email
        return token


class UntypedToken(tokens.UntypedToken):
    _token_backend = token_backend


class TokenObtainPairSerializer(serializers.TokenObtainPairSerializer):
    token_class = RefreshToken


class TokenRefreshSerializer(serializers.TokenRefreshSerializer):
    token_class = RefreshToken

    def validate(self, attrs):
        # simplejwt looks the token's user up with .get(): a deleted user's
        # refresh token raised DoesNotExist (a 500), not the 401 an inactive
        # user gets.
        try:
            return super().validate(attrs)
        except get_user_model().DoesNotExist as error:
            raise AuthenticationFailed(self.error_messages["no_active_account"],
                                       "no_active_account") from error


class TokenBlacklistSerializer(serializers.TokenBlacklistSerializer):
    token_class = RefreshToken


class TokenVerifySerializer(serializers.TokenVerifySerializer):
    """simplejwt's verify, with the keyring: any token type, signature,
    expiry, and not blacklisted."""

    def validate(self, attrs):
        token = UntypedToken(attrs["token"])
        if api_settings.BLACKLIST_AFTER_ROTATION and BlacklistedToken.objects.filter(
            token__jti=token.get(api_settings.JTI_CLAIM)
        ).exists():
            raise ValidationError(_("Token is blacklisted"))
        return {}


class ClaimsAuthentication(authentication.JWTStatelessUserAuthentication):
    """A valid access token, checked exactly as JWTAuthentication checks it
    (signature, kid, expiry, type), but without loading the user: the user
    is a simplejwt TokenUser made from the token's claims.

    Cost and trade-off (docs/benchmarks.md): it saves two database round
    trips per request, but a user deactivated or changed after login keeps
    the identity in their access token until it expires
    (DJANGO_JWT_ACCESS_LIFETIME, 5 minutes by default); a refresh is refused
    to an inactive user. Views that act on the user's data keep the default,
    JWTAuthentication, which loads the user on every request.
    """
