from rest_framework import serializers


class MeSerializer(serializers.Serializer):
    """The caller's id, username and email, read-only.

    Declared field by field rather than as a ModelSerializer: a
    ModelSerializer inspects the model to build its fields again for every
    instance, an eighth of this request in a profile (roles/app/README.md,
    "Tuned defaults")."""

    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)
    email = serializers.EmailField(read_only=True)
