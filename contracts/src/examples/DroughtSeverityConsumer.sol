// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {Chainlink} from "@chainlink/contracts/src/v0.8/Chainlink.sol";
import {ChainlinkClient} from "@chainlink/contracts/src/v0.8/ChainlinkClient.sol";

/// @title DroughtSeverityConsumer
/// @notice Example: a contract that asks the parametric oracle for a region's drought severity through
///         Chainlink's own Operator (direct request) and records the answer.
/// @dev The answer is severity (0..5) x TIMES, rounded: 36626 means 3.6626. The request pays `fee` juels
///      of LINK from this contract's balance; fund it with LINK first. Only the owner may spend it.
contract DroughtSeverityConsumer is ChainlinkClient {
    using Chainlink for Chainlink.Request;

    /// @notice The multiplier sent with every request (four decimal places).
    uint256 public constant TIMES = 10_000;

    address public immutable owner;
    bytes32 public immutable jobId;
    uint256 public immutable fee;

    struct Answer {
        int256 value;
        uint64 fulfilledAt;
    }

    /// @notice requestId => (region, period) asked, so an answer is filed under what was asked.
    mapping(bytes32 => bytes32) public questionOf;
    /// @notice keccak256(region, period) => the latest answer.
    mapping(bytes32 => Answer) private _answers;
    bytes32 public lastRequestId;
    int256 public lastValue;

    event SeverityRequested(bytes32 indexed requestId, string region, string period, uint256 payment);
    event SeverityFulfilled(bytes32 indexed requestId, bytes32 indexed question, int256 value);

    error NotOwner(address caller);
    error NoAnswer(string region, string period);

    constructor(address link, address operator, bytes32 jobId_, uint256 fee_) {
        _setChainlinkToken(link);
        _setChainlinkOracle(operator);
        owner = msg.sender;
        jobId = jobId_;
        fee = fee_;
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    /// @notice Ask for `region`'s severity in `period` (YYYY-MM) with the default job and fee.
    function requestDroughtSeverity(string calldata region, string calldata period)
        external
        onlyOwner
        returns (bytes32)
    {
        return _request(jobId, region, period, fee);
    }

    /// @notice Same with an explicit job id and payment (juels).
    function requestWith(bytes32 job, string calldata region, string calldata period, uint256 payment)
        external
        onlyOwner
        returns (bytes32)
    {
        return _request(job, region, period, payment);
    }

    /// @notice Take back the LINK of a request the oracle did not answer within its 5 minutes.
    function cancelRequest(bytes32 requestId, uint256 payment, uint256 expiration) external onlyOwner {
        _cancelChainlinkRequest(requestId, payment, this.fulfill.selector, expiration);
    }

    /// @notice Called by the Operator with the oracle's answer.
    function fulfill(bytes32 requestId, int256 value) external recordChainlinkFulfillment(requestId) {
        bytes32 question = questionOf[requestId];
        delete questionOf[requestId];
        _answers[question] = Answer(value, uint64(block.timestamp));
        lastRequestId = requestId;
        lastValue = value;
        emit SeverityFulfilled(requestId, question, value);
    }

    /// @return value severity x TIMES, and when it arrived (reverts when never answered)
    function severity(string calldata region, string calldata period)
        external
        view
        returns (int256 value, uint64 fulfilledAt)
    {
        Answer memory a = _answers[_question(region, period)];
        if (a.fulfilledAt == 0) revert NoAnswer(region, period);
        return (a.value, a.fulfilledAt);
    }

    function _request(bytes32 job, string calldata region, string calldata period, uint256 payment)
        private
        returns (bytes32 requestId)
    {
        Chainlink.Request memory req = _buildOperatorRequest(job, this.fulfill.selector);
        req._add("region", region);
        req._add("period", period);
        req._addUint("times", TIMES);
        requestId = _sendOperatorRequest(req, payment);
        questionOf[requestId] = _question(region, period);
        emit SeverityRequested(requestId, region, period, payment);
    }

    function _question(string calldata region, string calldata period) private pure returns (bytes32) {
        return keccak256(abi.encode(region, period));
    }
}
