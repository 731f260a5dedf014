"""A tiny user project the tests import by path (tests.user_project...), as a user's package would be."""
