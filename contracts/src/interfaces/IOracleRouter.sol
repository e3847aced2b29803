// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

/// @notice The attested report, field for field as in `oracle/reports.py` and its EIP-712 type.
/// @dev `value` is fixed point with 6 decimals for DROUGHT_SEVERITY (0 .. 5e6) and an enum for
///      COLDCHAIN_VERDICT (0 no decision, 1 breach, 2 delivered).
struct Report {
    bytes32 subject;
    uint8 kind;
    int256 value;
    uint64 epoch;
    uint64 observedAt;
    bytes32 inputsRoot;
    bytes32 modelId;
}

/// @notice Report kinds the router knows. Values match `oracle.reports.ReportKind`.
library ReportKinds {
    uint8 internal constant DROUGHT_SEVERITY = 1;
    uint8 internal constant COLDCHAIN_VERDICT = 2;
}

/// @notice Implemented by contracts that receive accepted reports from the router.
/// @dev Implementations must check `msg.sender == router`: anyone can call this function.
interface IReportSubscriber {
    function onReport(Report calldata report) external;
}

interface IOracleRouter {
    function subscribe(bytes32 subject) external;

    function unsubscribe(bytes32 subject) external;

    function subscribers(bytes32 subject) external view returns (address[] memory);

    function latest(bytes32 subject)
        external
        view
        returns (uint64 epoch, uint64 observedAt, int256 value, uint8 kind, bytes32 reportHash);
}
