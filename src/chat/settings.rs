//! Sampling settings and the popup form that edits them. The form edits text copies of the
//! values and applies them only when all parse, so a half-typed number never takes effect.

use crate::teacher::Sampling;

/// What the next turn is generated with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Softmax temperature; 0 is greedy.
    pub temperature: f32,
    /// Nucleus sampling mass.
    pub top_p: f32,
    /// Longest answer, in tokens.
    pub max_tokens: usize,
    /// Sampling seed.
    pub seed: u64,
    /// System prompt; `None` leaves the chat template's default.
    pub system: Option<String>,
}

impl Settings {
    /// The sampling part.
    pub fn sampling(&self) -> Sampling {
        Sampling {
            temperature: self.temperature,
            top_p: self.top_p,
        }
    }
}

/// Labels of the form's fields, in order.
pub const FIELDS: [&str; 5] = [
    "Temperature",
    "Top-p",
    "Max tokens",
    "Seed",
    "System prompt",
];

/// The settings popup: one text per field, the selected field, and the last error.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingsForm {
    /// Text of each field of [`FIELDS`].
    pub values: [String; 5],
    /// Index of the field being edited.
    pub selected: usize,
    /// Why the last apply failed.
    pub error: Option<String>,
}

impl SettingsForm {
    /// A form showing `s`.
    pub fn new(s: &Settings) -> Self {
        Self {
            values: [
                s.temperature.to_string(),
                s.top_p.to_string(),
                s.max_tokens.to_string(),
                s.seed.to_string(),
                s.system.clone().unwrap_or_default(),
            ],
            selected: 0,
            error: None,
        }
    }

    /// Select the next field (wrapping).
    pub fn next(&mut self) {
        self.selected = (self.selected + 1) % FIELDS.len();
    }

    /// Select the previous field (wrapping).
    pub fn prev(&mut self) {
        self.selected = (self.selected + FIELDS.len() - 1) % FIELDS.len();
    }

    /// Type into the selected field.
    pub fn insert(&mut self, text: &str) {
        let text = super::input::normalize(text).replace('\n', " ");
        self.values[self.selected].push_str(&text);
        self.error = None;
    }

    /// Delete the last character of the selected field.
    pub fn backspace(&mut self) {
        self.values[self.selected].pop();
        self.error = None;
    }

    /// Empty the selected field.
    pub fn clear_field(&mut self) {
        self.values[self.selected].clear();
        self.error = None;
    }

    /// The settings the form describes, or what to fix.
    ///
    /// # Errors
    /// A message naming the field and the bad value.
    pub fn parse(&self) -> Result<Settings, String> {
        let v = &self.values;
        let bad =
            |field: usize, want: &str| format!("{} '{}': {want}", FIELDS[field], v[field].trim());
        let temperature = v[0]
            .trim()
            .parse::<f32>()
            .ok()
            .filter(|t| (0.0..=5.0).contains(t))
            .ok_or_else(|| bad(0, "give a number from 0 (greedy) to 5"))?;
        let top_p = v[1]
            .trim()
            .parse::<f32>()
            .ok()
            .filter(|p| *p > 0.0 && *p <= 1.0)
            .ok_or_else(|| bad(1, "give a number in (0, 1]"))?;
        let max_tokens = v[2]
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| bad(2, "give a whole number of at least 1"))?;
        let seed = v[3]
            .trim()
            .parse::<u64>()
            .map_err(|_| bad(3, "give a whole number"))?;
        let system = Some(v[4].trim().to_string()).filter(|s| !s.is_empty());
        Ok(Settings {
            temperature,
            top_p,
            max_tokens,
            seed,
            system,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            temperature: 0.7,
            top_p: 0.9,
            max_tokens: 256,
            seed: 42,
            system: None,
        }
    }

    #[test]
    fn form_round_trips_and_edits_the_selected_field() {
        let mut f = SettingsForm::new(&settings());
        assert_eq!(f.parse(), Ok(settings()));
        f.prev();
        assert_eq!(FIELDS[f.selected], "System prompt");
        f.insert("Answer\nin French.");
        f.next();
        f.next();
        f.next();
        f.clear_field();
        f.insert("64");
        let s = f.parse().expect("valid");
        assert_eq!(s.max_tokens, 64);
        assert_eq!(s.system.as_deref(), Some("Answer in French."));
    }

    #[test]
    fn bad_values_name_the_field_and_the_value() {
        let mut f = SettingsForm::new(&settings());
        f.next();
        f.clear_field();
        f.insert("1.5");
        assert_eq!(
            f.parse(),
            Err("Top-p '1.5': give a number in (0, 1]".to_string())
        );
    }
}
