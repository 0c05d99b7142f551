//! The agent's settings: flags and the config file (owned by the API/config helper).

/// Every setting of `berth agent`.
#[derive(Debug, Clone)]
pub struct AgentConfig {}
