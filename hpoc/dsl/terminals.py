"""The grammar's terminals as the rest of the parser needs them: brackets, which the lexer
tracks to report unclosed ones, and words for naming terminals in syntax errors."""

from __future__ import annotations

# Bracket terminal -> the opening character of its pair (the lexer matches them up).
OPEN = {"LBRACE": "{", "LSQB": "[", "LPAR": "("}
CLOSE = {"RBRACE": "{", "RSQB": "[", "RPAR": "("}
# Opening character -> its closing one, and what it opens.
PAIR = {"{": "}", "[": "]", "(": ")"}
OPEN_WORD = {"{": "block", "[": "list", "(": "argument list"}

# Terminal name -> words for "expected ..." lists (in this order).
WORDS = {
    "NAME": "a name",
    "STRING": "a string",
    "NUMBER": "a number",
    "EQUAL": "`=`",
    "_EQEQ": "`==`",
    "IN": "`in`",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "COLON": "`:`",
    "DOT": "`.`",
    "COMMA": "`,`",
    "SEMICOLON": "`;`",
    "IF": "`if`",
    "OBJECTIVE": "`objective`",
    "MINIMIZE": "`minimize`",
    "MAXIMIZE": "`maximize`",
    "TRUE": "`true`",
    "FALSE": "`false`",
    "NULL": "`null`",
    "DURATION": "a duration",
    "SIZE": "a size",
    "CLOCK": "a time",
    "$END": "end of file",
}
VALUE_START = {"STRING", "NUMBER", "LSQB", "TRUE", "FALSE", "NULL", "DURATION", "SIZE", "CLOCK"}
