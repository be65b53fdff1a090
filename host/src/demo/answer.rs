//! What the demo answers, whatever protocol it speaks: words of text that
//! quote the last user message, or one call of the first tool, and the
//! usage to report.

use super::Faults;

/// The parts of a request the answer depends on, read from any protocol.
pub struct Prompt {
    /// The text of every message, in order.
    pub texts: Vec<String>,
    pub last_user: String,
    /// The first tool offered, unless tools were turned off.
    pub tool: Option<String>,
    pub max_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Finish {
    #[default]
    Stop,
    Length,
    ToolUse,
}

/// Tokens as the demo reports them, in the neutral meaning of Sluice's
/// usage record: cached, cache-write within prompt; reasoning within
/// completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tokens {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
}

pub struct Answer {
    pub words: Vec<String>,
    /// The tool's name and its JSON arguments in fragments.
    pub tool_call: Option<(String, Vec<String>)>,
    pub finish: Finish,
    pub tokens: Tokens,
}

impl Answer {
    pub fn new(prompt: &Prompt, faults: &Faults) -> Self {
        let prompt_chars: usize = prompt.texts.iter().map(|t| t.chars().count()).sum();
        let prompt_tokens = (prompt_chars.div_ceil(4) + 3 * prompt.texts.len()) as u64
            + faults.cached
            + faults.cache_write;
        let (words, tool_call, finish) = match &prompt.tool {
            Some(name) => {
                let arguments =
                    serde_json::json!({"location": "Paris", "unit": "celsius", "note": "café ☕ 😀"})
                        .to_string();
                let chars: Vec<char> = arguments.chars().collect();
                let fragments: Vec<String> = chars.chunks(7).map(|c| c.iter().collect()).collect();
                (Vec::new(), Some((name.clone(), fragments)), Finish::ToolUse)
            }
            None => {
                let (words, finish) = words(&prompt.last_user, prompt.max_tokens, faults);
                (words, None, finish)
            }
        };
        let visible = match &tool_call {
            Some((_, fragments)) => fragments.len() as u64,
            None => words.len() as u64,
        };
        Answer {
            words,
            tool_call,
            finish,
            tokens: Tokens {
                prompt_tokens,
                completion_tokens: visible + faults.reasoning,
                cached_tokens: faults.cached,
                cache_write_tokens: faults.cache_write,
                reasoning_tokens: faults.reasoning,
            },
        }
    }

    /// How many deltas the answer streams in.
    pub fn deltas(&self) -> usize {
        match &self.tool_call {
            Some((_, fragments)) => fragments.len(),
            None => self.words.len(),
        }
    }

    pub fn text(&self) -> String {
        self.words.concat()
    }

    pub fn arguments(&self) -> Option<String> {
        self.tool_call
            .as_ref()
            .map(|(_, fragments)| fragments.concat())
    }
}

fn words(last_user: &str, cap: Option<u64>, faults: &Faults) -> (Vec<String>, Finish) {
    let quoted: String = last_user.chars().take(120).collect();
    let text = format!(
        "Hello from the Sluice demo upstream! You said: «{quoted}». Café ☕ naïve résumé 😀 — streaming works."
    );
    let mut words: Vec<String> = text.split(' ').map(|w| format!("{w} ")).collect();
    if let Some(count) = faults.words {
        let base = words.clone();
        words = (0..count).map(|i| base[i % base.len()].clone()).collect();
    }
    match cap {
        Some(cap) if (cap as usize) < words.len() => {
            words.truncate(cap as usize);
            (words, Finish::Length)
        }
        _ => (words, Finish::Stop),
    }
}
