//! The interactive shell: read a command, run it, print the reply.
//!
//! Where a command runs is a [`Session`]: [`Local`] runs it on an open
//! [`Db`] (tokenizer + [`Command`] + execute), [`Remote`] sends it to a
//! server with [`Client`] (tokenizer + RESP). Both give back the same
//! [`Reply`], printed the same way, so `pydb shell` and
//! `pydb shell --connect` look alike. Two loops drive a session:
//!
//! - [`run_terminal`]: on a terminal, with line editing and history
//!   (rustyline), a banner and a prompt;
//! - [`run_pipe`]: when stdin is a pipe or a file, one command per line, no
//!   prompt and no banner, and every reply is flushed as soon as it is
//!   written, so a program can write a command and wait for its reply.
//!
//! A bad line (unknown command, wrong arity, bad quoting, a failed write)
//! prints an error reply and the loop goes on; only `QUIT`/`EXIT`, the end
//! of input, or a failure to write the reply ends it.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;

use pydb::Db;
use pydb_server::client::Client;
use pydb_server::command::Command;
use pydb_server::multi::MultiState;
use pydb_server::reply::Reply;

use crate::{Error, Result};

/// The longest line the pipe loop accepts (as Redis's inline requests are
/// capped): a longer line is answered with an error, not buffered forever.
pub const MAX_LINE_LEN: usize = 64 << 20;

/// What one input line produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineOutcome {
    /// A blank line: nothing to print.
    Blank,
    /// A reply to print.
    Reply(Reply),
    /// `QUIT` or `EXIT`: end the session without printing.
    Quit,
}

/// Where the shell's commands run.
pub trait Session {
    /// Runs one line. An error ends the shell (a lost connection); a bad
    /// command is a [`LineOutcome::Reply`] holding an error reply.
    fn run_line(&mut self, line: &[u8]) -> Result<LineOutcome>;
}

/// A session on a database opened by this process. It keeps `MULTI`'s
/// queue and `WATCH`'s keys as a server connection does.
#[derive(Debug)]
pub struct Local<'a> {
    db: &'a Db,
    multi: MultiState,
}

impl<'a> Local<'a> {
    /// A session on `db`.
    pub fn new(db: &'a Db) -> Self {
        Self {
            db,
            multi: MultiState::new(),
        }
    }
}

impl Session for Local<'_> {
    fn run_line(&mut self, line: &[u8]) -> Result<LineOutcome> {
        let parsed = match Command::parse_line(line) {
            Ok(None) => return Ok(LineOutcome::Blank),
            Ok(Some(command)) if command.is_quit() => return Ok(LineOutcome::Quit),
            Ok(Some(command)) => Ok(command),
            Err(e) => Err(e),
        };
        Ok(LineOutcome::Reply(self.multi.answer_local(self.db, parsed)))
    }
}

/// A session on a server, over a [`Client`] connection.
#[derive(Debug)]
pub struct Remote {
    client: Client,
}

impl Remote {
    /// A session over `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl Session for Remote {
    fn run_line(&mut self, line: &[u8]) -> Result<LineOutcome> {
        let args = match pydb_server::tokenize::tokenize(line) {
            Ok(args) => args,
            Err(e) => {
                return Ok(LineOutcome::Reply(
                    pydb_server::CommandError::from(e).into(),
                ));
            }
        };
        let Some(name) = args.first() else {
            return Ok(LineOutcome::Blank);
        };
        if name.eq_ignore_ascii_case(b"quit") || name.eq_ignore_ascii_case(b"exit") {
            // Tell the server, as redis-cli does; the session ends either way.
            let _ = self.client.call(&[b"QUIT"]);
            return Ok(LineOutcome::Quit);
        }
        Ok(LineOutcome::Reply(self.client.call(&args)?))
    }
}

/// Runs one line against `db`, with no session state (a `MULTI` here is
/// answered with an error; [`Local`] keeps the state).
pub fn run_line(db: &Db, line: &[u8]) -> LineOutcome {
    match Command::parse_line(line) {
        Ok(None) => LineOutcome::Blank,
        Ok(Some(command)) if command.is_quit() => LineOutcome::Quit,
        Ok(Some(command)) => LineOutcome::Reply(command.execute(db)),
        Err(e) => LineOutcome::Reply(e.into()),
    }
}

/// Runs the shell on stdin/stdout: the terminal loop if stdin is a
/// terminal, the pipe loop otherwise. `history` is where the terminal loop
/// keeps its history (none for the memory engine, which writes no files).
pub fn run(session: &mut dyn Session, history: Option<PathBuf>, banner: &str) -> Result<()> {
    if std::io::stdin().is_terminal() {
        run_terminal(session, history, banner)
    } else {
        let stdin = std::io::stdin().lock();
        let stdout = std::io::stdout().lock();
        run_pipe(session, stdin, stdout)
    }
}

/// The pipe loop: one command per line from `input`, each reply written to
/// `output` and flushed before the next line is read.
pub fn run_pipe(
    session: &mut dyn Session,
    mut input: impl BufRead,
    mut output: impl Write,
) -> Result<()> {
    let stdout_err = |e| Error::io("<stdout>", e);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = input
            .by_ref()
            .take(MAX_LINE_LEN as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io("<stdin>", e))?;
        if read == 0 {
            return Ok(());
        }
        let outcome = if line.len() > MAX_LINE_LEN && line.last() != Some(&b'\n') {
            skip_rest_of_line(&mut input)?;
            LineOutcome::Reply(Reply::Error(
                "ERR Protocol error: too big inline request".into(),
            ))
        } else {
            session.run_line(&line)?
        };
        match outcome {
            LineOutcome::Blank => {}
            LineOutcome::Quit => return Ok(()),
            LineOutcome::Reply(reply) => {
                output
                    .write_all(reply.to_text().as_bytes())
                    .map_err(stdout_err)?;
                output.flush().map_err(stdout_err)?;
            }
        }
    }
}

/// Discards input up to and including the next newline.
fn skip_rest_of_line(input: &mut impl BufRead) -> Result<()> {
    loop {
        let buf = input.fill_buf().map_err(|e| Error::io("<stdin>", e))?;
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(at) = buf.iter().position(|&b| b == b'\n') {
            input.consume(at + 1);
            return Ok(());
        }
        let len = buf.len();
        input.consume(len);
    }
}

/// The terminal loop: rustyline for editing and history, a banner, a
/// prompt. Ctrl-C abandons the line being typed; Ctrl-D leaves.
pub fn run_terminal(
    session: &mut dyn Session,
    history: Option<PathBuf>,
    banner: &str,
) -> Result<()> {
    use rustyline::error::ReadlineError;

    let terminal_err = |e: ReadlineError| Error::io("<terminal>", std::io::Error::other(e));
    let mut editor = rustyline::DefaultEditor::new().map_err(terminal_err)?;
    if let Some(path) = &history {
        // A missing history file is the normal first run.
        let _ = editor.load_history(path);
    }
    println!("{banner}");
    println!("Type HELP for the commands, QUIT to leave.");
    loop {
        match editor.readline("pydb> ") {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                match session.run_line(line.as_bytes())? {
                    LineOutcome::Blank => {}
                    LineOutcome::Quit => break,
                    LineOutcome::Reply(reply) => print!("{}", reply.to_text()),
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(terminal_err(e)),
        }
    }
    if let Some(path) = &history
        && let Err(e) = editor.save_history(path)
    {
        eprintln!(
            "warning: could not save the history to {}: {e}",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_loop_answers_every_line_and_goes_on_after_errors() {
        let db = Db::memory().unwrap();
        let input = b"set k v\n\nnope\nGET k\nget\nquit\nget k\n";
        let mut output = Vec::new();
        run_pipe(&mut Local::new(&db), &input[..], &mut output).unwrap();
        assert_eq!(
            String::from_utf8(output).unwrap(),
            "OK\n\
             (error) ERR unknown command 'nope', with args beginning with: \n\
             \"v\"\n\
             (error) ERR wrong number of arguments for 'get' command\n"
        );
    }

    #[test]
    fn pipe_loop_handles_crlf_and_a_last_line_without_newline() {
        let db = Db::memory().unwrap();
        let mut output = Vec::new();
        run_pipe(&mut Local::new(&db), &b"set k v\r\nget k"[..], &mut output).unwrap();
        assert_eq!(String::from_utf8(output).unwrap(), "OK\n\"v\"\n");
    }

    #[test]
    fn the_local_shell_runs_multi_exec_and_watch() {
        let db = Db::memory().unwrap();
        let mut output = Vec::new();
        let input = b"multi\nset k 1\nincr k\nexec\nwatch k\nset k 5\nmulti\nget k\nexec\n";
        run_pipe(&mut Local::new(&db), &input[..], &mut output).unwrap();
        assert_eq!(
            String::from_utf8(output).unwrap(),
            "OK\nQUEUED\nQUEUED\n1) OK\n2) (integer) 2\nOK\nOK\nOK\nQUEUED\n(nil)\n"
        );
    }
}
