//! The one command-line reader of the xtask subcommands: `--flag value`, `--flag=value`, `-h`/`--help`, positionals.

use anyhow::{Result, anyhow};

/// One thing on a subcommand's command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Token<'a> {
    /// `-h` or `--help`.
    Help,
    /// A flag such as `--dest`; read its value with [`Flags::value`].
    Flag(&'a str),
    /// Anything that does not start with `-`.
    Positional(&'a str),
    /// Something that starts with `-` but is not `--name` or `--name=value`, kept whole for the error.
    Unknown(&'a str),
}

/// Walks the arguments of a subcommand, handing out flags and their values.
pub struct Flags<'a> {
    args: std::slice::Iter<'a, String>,
    inline: Option<&'a str>,
}

impl<'a> Flags<'a> {
    /// Reads `args`, the words after the subcommand's name.
    pub fn new(args: &'a [String]) -> Self {
        Flags { args: args.iter(), inline: None }
    }

    /// The next token, or `None` at the end.
    pub fn next_token(&mut self) -> Option<Token<'a>> {
        let arg = self.args.next()?.as_str();
        self.inline = None;
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
            _ => (arg, None),
        };
        self.inline = inline;
        Some(match flag {
            "-h" | "--help" => Token::Help,
            f if f.starts_with("--") => Token::Flag(f),
            f if f.starts_with('-') => Token::Unknown(f),
            _ => Token::Positional(arg),
        })
    }

    /// The value of `flag`, the flag just read: after its `=`, or the next word.
    pub fn value(&mut self, flag: &str) -> Result<String> {
        match self.inline.take() {
            Some(value) => Ok(value.to_owned()),
            None => self.args.next().cloned().ok_or_else(|| anyhow!("`{flag}` needs a value")),
        }
    }
}
