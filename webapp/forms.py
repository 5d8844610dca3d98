"""Flask-WTF forms (every one carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    FieldList,
    FormField,
    IntegerField,
    PasswordField,
    SelectMultipleField,
    StringField,
    SubmitField,
)
from wtforms.form import Form
from wtforms.validators import DataRequired, EqualTo, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from ledger.accounts import MIN_PASSWORD, ROLES

MAX_PAYEES = 32


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


ROLE_CHOICES = [(r, r.capitalize()) for r in ROLES]


class SignupForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(3, 32)])
    password = PasswordField("Password", validators=[DataRequired(), Length(MIN_PASSWORD, 256)])
    confirm = PasswordField("Repeat the password", validators=[EqualTo("password", "the passwords differ")])
    roles = MultiCheckboxField("I am", choices=ROLE_CHOICES, default=["artist"])
    payout_address = StringField("Payout address (optional, any address)", validators=[Optional(), Length(42, 42)])
    submit = SubmitField("Create my account")


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(1, 64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(1, 256)])
    submit = SubmitField("Log in")


class PasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired()])
    new = PasswordField("New password", validators=[DataRequired(), Length(MIN_PASSWORD, 256)])
    confirm = PasswordField("Repeat the new password", validators=[EqualTo("new", "the passwords differ")])
    submit = SubmitField("Change password")


class ProfileForm(FlaskForm):
    roles = MultiCheckboxField("Roles", choices=ROLE_CHOICES)
    payout_address = StringField("Payout address", validators=[Optional(), Length(42, 42)])
    submit = SubmitField("Save")


class PayeeRow(Form):
    payee = StringField("Payee (address or portal username)", validators=[Optional(), Length(1, 64)])
    bps = IntegerField("Basis points", validators=[Optional(), NumberRange(1, 10_000)])


class WorkForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired(), Length(1, 200)])
    isrc = StringField("ISRC (recording)", validators=[Optional(), Length(1, 20)])
    iswc = StringField("ISWC (composition)", validators=[Optional(), Length(1, 20)])
    payees = FieldList(FormField(PayeeRow), min_entries=2, max_entries=MAX_PAYEES)
    metered = BooleanField("Offer a METERED license (per play, for venues and devices)", default=True)
    metered_rate = StringField("Rate per play ($)", default="0.001")
    metered_fee = StringField("Activation fee ($)", default="0")
    metered_days = IntegerField("License period (days)", default=365, validators=[Optional(), NumberRange(1, 3650)])
    flat = BooleanField("Offer a FLAT license (one-off fee: sync, broadcast)")
    flat_fee = StringField("Fee ($)", default="100")
    flat_days = IntegerField("License period (days)", default=365, validators=[Optional(), NumberRange(1, 3650)])
    submit = SubmitField("Register the work")


class ActionForm(FlaskForm):
    """A button that only needs its CSRF token (distribute, revoke...)."""

    submit = SubmitField("Go")


class WithdrawForm(FlaskForm):
    to = StringField("Send to (any address)", validators=[DataRequired(), Length(42, 42)])
    submit = SubmitField("Withdraw my balance")


class TokenForm(FlaskForm):
    name = StringField("Token name", validators=[DataRequired(), Length(1, 80)])
    submit = SubmitField("Create a read-only token")
