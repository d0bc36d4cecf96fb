"""simplejwt over the keyring (config/jwt_keys.py), through the extension
points simplejwt offers: a token backend, token classes that use it, and
serializers built on those classes. The settings point simplejwt at them
(AUTH_TOKEN_CLASSES and the *_SERIALIZER settings in config/settings/base.py).

Use these classes, not simplejwt's own, to make tokens in your code: for
example `RefreshToken.for_user(user)` from this module.
"""
import time

import jwt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections, router
from django.utils.translation import gettext_lazy as _
from jwt import ExpiredSignatureError, InvalidAlgorithmError, InvalidTokenError
from rest_framework.exceptions import AuthenticationFailed, ValidationError
from rest_framework_simplejwt import authentication, serializers, tokens
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import (
    InvalidToken,
    TokenBackendError,
    TokenBackendExpiredToken,
    TokenError,
)
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.utils import get_md5_hash_password


class KeyringTokenBackend(TokenBackend):
    """Signs with the keyring's signing key and names it in the `kid` header;
    verifies with the key the token's `kid` names, with that key's algorithm
    only. A token without a known `kid` is invalid."""

    # Tokens this process has verified, with the key that verified them: a
    # client sends the same access token with every call until it expires,
    # and checking its signature again each time was a sixth of the cost of
    # an authenticated request (roles/app/README.md, "Tuned defaults").
    # Bounded, so that many clients cannot grow it without limit.
    VERIFIED_CACHE_SIZE = 1024

    def __init__(self):
        super().__init__(
            "HS256",  # unused: every key carries its own algorithm
            audience=api_settings.AUDIENCE,
            issuer=api_settings.ISSUER,
            leeway=api_settings.LEEWAY,
            json_encoder=api_settings.JSON_ENCODER,
        )
        self._verified = {}

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
        if verify:
            payload = self._recall(token)
            if payload is not None:
                return payload
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except InvalidTokenError as error:
            raise TokenBackendError(_("Token is invalid")) from error
        key = self.keyring.get(kid)
        if key is None:
            raise TokenBackendError(_("Token is invalid"))
        payload = self._decode_with(token, key, verify)
        if verify:
            self._remember(token, key, payload)
        return payload

    def _recall(self, token):
        """The payload of a token verified before, while it is still valid:
        its key is still this very key in the keyring (a rotation or a test's
        keyring swaps the object) and it has not expired (the one check of
        PyJWT's that depends on the time; audience and issuer are settings)."""
        entry = self._verified.get(token)
        if entry is None:
            return None
        key, payload, valid_until = entry
        if time.time() >= valid_until or self.keyring.get(key.kid) is not key:
            self._verified.pop(token, None)
            return None
        return dict(payload)

    def _remember(self, token, key, payload):
        exp = payload.get("exp")
        if not isinstance(exp, (int, float)):
            return
        if len(self._verified) >= self.VERIFIED_CACHE_SIZE:
            # Oldest first: dicts keep insertion order.
            self._verified.pop(next(iter(self._verified), None), None)
        # PyJWT's own rule: expired once exp <= now - leeway.
        self._verified[token] = (key, dict(payload), exp + self.get_leeway().total_seconds())

    def _decode_with(self, token, key, verify):
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


# Who the token belongs to, written into every token at login and read
# again from the user at each refresh (RedeemedRefreshToken). A view that
# only needs to know who is calling reads them instead of loading the user
# from the database on every request (ClaimsAuthentication below).
IDENTITY_CLAIMS = ("username", "email")


def stamp_identity(token, user):
    """Write the IDENTITY_CLAIMS of `user` into `token`, and with
    CHECK_REVOKE_TOKEN the claim that ties it to the user's password."""
    token["username"] = user.get_username()
    token["email"] = user.email
    if api_settings.CHECK_REVOKE_TOKEN:
        token[api_settings.REVOKE_TOKEN_CLAIM] = get_md5_hash_password(user.password)


def password_unchanged(token, user):
    """False when `token` was issued for another password of `user` (with
    CHECK_REVOKE_TOKEN). A token without the claim was issued before the
    check was turned on: it is accepted, and a refresh stamps its
    successors, so that turning the check on logs nobody out."""
    if not api_settings.CHECK_REVOKE_TOKEN:
        return True
    claim = token.get(api_settings.REVOKE_TOKEN_CLAIM)
    return claim is None or claim == get_md5_hash_password(user.password)


class RefreshToken(tokens.RefreshToken):
    _token_backend = token_backend
    access_token_class = AccessToken

    @classmethod
    def for_user(cls, user):
        token = super().for_user(user)
        stamp_identity(token, user)
        return token


class RedeemedRefreshToken(RefreshToken):
    """A refresh token handed in for new tokens. Once verified, its identity
    claims are read again from the user, so that the access token it makes
    (and the refresh token that replaces it) name the user as they are now:
    a renamed user is seen by ClaimsAuthentication one access token later,
    not at their next login."""

    def verify(self):
        super().verify()
        user = UserLoader.for_model(get_user_model()).load(self.get(api_settings.USER_ID_CLAIM))
        # No user: the serializer refuses the token, with the right error.
        if user is not None:
            if not password_unchanged(self, user):
                # simplejwt checks this for access tokens only: a refresh
                # token from before a new password would go on working.
                raise TokenError(_("The user's password has been changed."))
            stamp_identity(self, user)

    def blacklist(self):
        """Blacklist the token as it is redeemed, refusing it if another
        request did so first. Two requests with the same token (a thief's
        and its owner's) can both pass the blacklist check in verify();
        simplejwt's get_or_create then lets both make new tokens, and the
        thief keeps a token family of their own. The blacklist row is unique
        per token, so exactly one request creates it."""
        blacklisted, created = super().blacklist()
        if not created:
            raise TokenError(_("Token is blacklisted"))
        return blacklisted, created


class UntypedToken(tokens.UntypedToken):
    _token_backend = token_backend


class TokenObtainPairSerializer(serializers.TokenObtainPairSerializer):
    token_class = RefreshToken


class TokenRefreshSerializer(serializers.TokenRefreshSerializer):
    token_class = RedeemedRefreshToken

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


class UserLoader:
    """Loads one user by USER_ID_FIELD with the SELECT the ORM would send for
    `.get()`, written once per process and database instead of built and
    compiled again by a QuerySet on every request: 88 instead of 268 us of
    CPU per lookup on the demo host. The user comes back as the ORM makes
    it: every column, through the same database converters, via
    Model.from_db."""

    _loaders = {}

    @classmethod
    def for_model(cls, model):
        using = router.db_for_read(model)
        loader = cls._loaders.get((model, using))
        if loader is None:
            loader = cls._loaders[(model, using)] = cls(model, using)
        return loader

    def __init__(self, model, using):
        self.model = model
        self.using = using
        connection = connections[using]
        quote = connection.ops.quote_name
        opts = model._meta
        self.id_field = opts.get_field(api_settings.USER_ID_FIELD)
        fields = opts.concrete_fields
        self.names = [field.attname for field in fields]
        self.sql = "SELECT {} FROM {} WHERE {} = %s".format(
            ", ".join(quote(field.column) for field in fields),
            quote(opts.db_table),
            quote(self.id_field.column),
        )
        self.converters = []
        for index, field in enumerate(fields):
            column = field.get_col(opts.db_table)
            found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            if found:
                self.converters.append((index, column, found))

    def load(self, user_id):
        """The user, or None when there is no such user."""
        connection = connections[self.using]
        try:
            value = self.id_field.get_db_prep_value(user_id, connection)
        except (TypeError, ValueError):
            return None
        with connection.cursor() as cursor:
            cursor.execute(self.sql, [value])
            row = cursor.fetchone()
        if row is None:
            return None
        row = list(row)
        for index, column, converters in self.converters:
            for converter in converters:
                row[index] = converter(row[index], column, connection)
        return self.model.from_db(self.using, self.names, row)


class SchemeIgnoringCaseMixin:
    """Reads the Authorization header's scheme without regard to case, as
    HTTP defines it (RFC 9110, 11.1): "bearer <token>" carries a Bearer
    token too. simplejwt compares the bytes, and answered such a client
    "Authentication credentials were not provided"."""

    def get_raw_token(self, header):
        parts = header.split(None, 1)
        if parts:
            declared = {name.lower().encode(): name.encode() for name in api_settings.AUTH_HEADER_TYPES}
            scheme = declared.get(parts[0].lower())
            if scheme is not None and scheme != parts[0]:
                header = b" ".join([scheme] + parts[1:])
        return super().get_raw_token(header)


class DatabaseUserAuthentication(SchemeIgnoringCaseMixin, authentication.JWTAuthentication):
    """The API's default authentication: simplejwt's JWTAuthentication, with
    every check it makes (a valid access token, then a user that exists, is
    active and, with CHECK_REVOKE_TOKEN (on in settings), has not changed
    their password since the token was issued),
    the user loaded from the database on every request so that a deactivated
    or deleted user is refused at once.

    Only the loading is leaner (UserLoader): the same one query, for a fifth
    less CPU per GET /api/me/ (roles/app/README.md, "Tuned defaults").
    """

    def get_user(self, validated_token):
        try:
            user_id = validated_token[api_settings.USER_ID_CLAIM]
        except KeyError as error:
            raise InvalidToken(_("Token contained no recognizable user identification")) from error
        user = UserLoader.for_model(self.user_model).load(user_id)
        if user is None:
            raise AuthenticationFailed(_("User not found"), code="user_not_found")
        if api_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed(_("User is inactive"), code="user_inactive")
        if not password_unchanged(validated_token, user):
            raise AuthenticationFailed(_("The user's password has been changed."), code="password_changed")
        return user


class ClaimsAuthentication(SchemeIgnoringCaseMixin, authentication.JWTStatelessUserAuthentication):
    """A valid access token, checked exactly as JWTAuthentication checks it
    (signature, kid, expiry, type), but without loading the user: the user
    is a simplejwt TokenUser made from the token's claims.

    Cost and trade-off (docs/benchmarks.md): it saves the database query of
    every request, but a user deactivated or changed after login keeps
    the identity in their access token until it expires
    (DJANGO_JWT_ACCESS_LIFETIME, 5 minutes by default), a new password
    included; a refresh is refused to an inactive user or one whose password
    changed, and names a changed one as they are now. Views
    that act on the user's data keep the default, DatabaseUserAuthentication,
    which loads the user on every request.
    """
