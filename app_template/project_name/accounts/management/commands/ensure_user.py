"""Create, update or deactivate one API user, idempotently, for deploy
automation.

The password is read from an environment variable, never from the command
line, so that it does not show up in process listings or shell history.
The last line printed is one word, "created", "updated" or "unchanged", so
that automation can tell whether anything changed.

--deactivate is what ops use for someone who leaves: the user can no longer
log in and every token they hold is refused at once (the API loads the user
on each request, and a refresh token carries a hash of the password, which
is made unusable), while their rows and whatever refers to them stay. Listing
them again with a password makes them active again.
"""
import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

PASSWORD_VARIABLE = "DJANGO_ENSURE_USER_PASSWORD"


class Command(BaseCommand):
    help = f"Create or update a user; the password comes from ${PASSWORD_VARIABLE}."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument("--superuser", action="store_true")
        parser.add_argument(
            "--deactivate",
            action="store_true",
            help="Deactivate the user (if there is one) instead; needs no password.",
        )

    @transaction.atomic
    def handle(self, *args, username, email, superuser, deactivate, **options):
        if deactivate:
            self.stdout.write(self._deactivate(username))
            return
        password = os.environ.get(PASSWORD_VARIABLE, "")
        if not password:
            raise CommandError(f"{PASSWORD_VARIABLE} is empty or not set.")

        user_model = get_user_model()
        user, created = user_model.objects.select_for_update().get_or_create(
            username=username
        )
        wanted = {
            "email": email,
            "is_active": True,
            "is_staff": superuser,
            "is_superuser": superuser,
        }
        changed = created
        for field, value in wanted.items():
            if getattr(user, field) != value:
                setattr(user, field, value)
                changed = True
        if created or not user.check_password(password):
            user.set_password(password)
            changed = True
        if changed:
            user.save()
        self.stdout.write("created" if created else "updated" if changed else "unchanged")

    @staticmethod
    def _deactivate(username):
        user = get_user_model().objects.select_for_update().filter(username=username).first()
        if user is None or not (user.is_active or user.has_usable_password()):
            return "unchanged"
        user.is_active = False
        user.set_unusable_password()
        user.save(update_fields=["is_active", "password"])
        return "updated"
