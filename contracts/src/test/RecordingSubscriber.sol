// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {IOracleRouter, IReportSubscriber, Report} from "../interfaces/IOracleRouter.sol";

/// @notice Test helper: remembers how many reports it got and the last value.
contract RecordingSubscriber is IReportSubscriber {
    IOracleRouter public immutable router;
    uint256 public calls;
    int256 public lastValue;
    uint64 public lastEpoch;

    constructor(IOracleRouter router_) {
        router = router_;
    }

    function join(bytes32 subject) external {
        router.subscribe(subject);
    }

    /// @notice Leave the subject's subscriber list (tests unsubscribe).
    function leave(bytes32 subject) external {
        router.unsubscribe(subject);
    }

    function onReport(Report calldata report) external override {
        require(msg.sender == address(router), "not router");
        calls += 1;
        lastValue = report.value;
        lastEpoch = report.epoch;
    }
}
