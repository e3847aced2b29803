// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title FeeOnTransferToken
/// @notice Test only: a 6-decimal ERC-20 that burns `feeBps` of every transfer, so the recipient gets less
///         than the amount sent (as some real tokens do). Anyone mints and sets the fee.
contract FeeOnTransferToken is ERC20 {
    uint256 public feeBps = 100;

    constructor() ERC20("Fee USD", "feeUSD") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function setFeeBps(uint256 bps) external {
        require(bps <= 10_000, "FeeOnTransferToken: fee above 100 %");
        feeBps = bps;
    }

    function _transfer(address from, address to, uint256 amount) internal override {
        uint256 fee = (amount * feeBps) / 10_000;
        if (fee > 0) _burn(from, fee);
        super._transfer(from, to, amount - fee);
    }
}
