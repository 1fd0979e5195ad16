"""WTForms forms. Every form carries a CSRF token (Flask-WTF)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SubmitField
from wtforms.validators import DataRequired, Length


class EmptyForm(FlaskForm):
    """Only the CSRF token: for button-only POSTs (sign out, retry, cancel, ...)."""

    submit = SubmitField("Submit")


class LoginForm(FlaskForm):
    # No format check beyond "required": accounts are created by the CLI, and the credential
    # check answers the same way for anything that is not a known address.
    email = EmailField("Email", validators=[DataRequired(), Length(max=255)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    submit = SubmitField("Sign in")
